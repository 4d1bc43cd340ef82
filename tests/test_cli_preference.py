"""The preference, leaderboard, agreement and data export commands, end to end on real data."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from crowdtune.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_fit_predict_evaluate_round_trip(tmp_path):
    model_dir = tmp_path / "model"
    fit = invoke("preference", "fit", "--data", "@pandalm", "--model", "length",
                 "--out", str(model_dir), "--json")  # fmt: skip
    assert fit.exit_code == 0, fit.output
    summary = json.loads(fit.stdout)
    assert summary["n"] == 999 and summary["calibration"] == "temperature"
    assert (model_dir / "meta.json").is_file()

    preds = tmp_path / "preds.csv"
    predict = invoke("preference", "predict", "--model-dir", str(model_dir),
                     "--data", "@car:test", "--out", str(preds))  # fmt: skip
    assert predict.exit_code == 0, predict.output
    table = pd.read_csv(preds)
    assert list(table.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert len(table) == 254
    np.testing.assert_allclose(table.iloc[:, 1:].sum(axis=1), 1.0)

    evaluate = invoke("preference", "evaluate", "--model-dir", str(model_dir),
                      "--data", "@car:test", "--json")  # fmt: skip
    assert evaluate.exit_code == 0, evaluate.output
    scores = json.loads(evaluate.stdout)
    assert set(scores) == {"log_loss", "accuracy", "n", "log_loss_ci"}
    assert scores["n"] == 254
    low, high = scores["log_loss_ci"]
    assert low < scores["log_loss"] < high
    # Expert rewrites are longer and better, so a length model trained on PandaLM transfers.
    assert scores["accuracy"] > 0.6


def test_cv_prints_one_row_per_model_and_scheme(tmp_path):
    result = invoke("preference", "cv", "--data", "@pandalm", "--data", "@car:test",
                    "--models", "length,difference-bucket", "--folds", "3", "--out",
                    str(tmp_path), "--json", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    rows = pd.DataFrame(body["rows"])
    assert body["n"] == 999 + 254
    pooled = rows[rows.held_out == "all"]
    assert len(pooled) == 4  # 2 models x 2 schemes
    assert set(rows[rows.scheme == "leave-one-dataset-out"].held_out) == {"all", "pandalm", "car"}
    assert (pooled.log_loss_ci_low < pooled.log_loss).all()
    assert (tmp_path / "cv.csv").is_file() and (tmp_path / "predictions.csv").is_file()


def test_bad_options_fail_before_work(tmp_path):
    result = invoke("preference", "fit", "--data", "@pandalm", "--model", "magic",
                    "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 2 and "length, difference-bucket" in result.output
    result = invoke("preference", "cv", "--data", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2 and "missing.csv" in result.output
    result = invoke("preference", "evaluate", "--model-dir", str(tmp_path), "--data", "@pandalm")
    assert result.exit_code == 2 and "not a model directory" in result.output


def test_leaderboard_ranks_the_mt_bench_models():
    result = invoke("leaderboard", "--data", "@mt-bench", "--bootstrap", "200", "--online-elo",
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    models = body["models"]
    assert len(models) == 6
    assert models[0]["model"] == "gpt-4" and models[0]["rank"] == 1
    assert models[-1]["model"] == "llama-13b"
    assert all(m["ci_low"] <= m["rating"] <= m["ci_high"] for m in models)
    assert set(body["online_elo"]) == {m["model"] for m in models}
    davidson = invoke("leaderboard", "--data", "@mt-bench", "--ties", "davidson",
                      "--bootstrap", "100", "--json")  # fmt: skip
    assert [p["parameter"] for p in json.loads(davidson.stdout)["parameters"]] == ["nu"]


def test_leaderboard_needs_model_names():
    result = invoke("leaderboard", "--data", "@pandalm")
    assert result.exit_code == 2 and "model_a" in result.output


def test_agreement_on_pandalm_annotators():
    result = invoke("agreement", "--data", "@pandalm:annotators", "--bootstrap", "200", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["n_annotators"] == 3 and len(body["pairwise"]) == 3
    assert 0.8 < body["fleiss_kappa"]["estimate"] < 0.95
    assert 0.8 < body["krippendorff_alpha"]["estimate"] < 0.95


def test_agreement_dawid_skene_on_mt_bench_judges():
    result = invoke("agreement", "--data", "@mt-bench", "--model", "dawid-skene",
                    "--bootstrap", "20", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model"] == "dawid-skene" and body["n_votes"] == 1751
    assert body["n_annotators"] == 65 and len(body["items"]) == body["n_items"]
    judge = body["annotators"][0]
    assert len(judge["confusion"]) == 3 and judge["ci_low"] <= judge["accuracy"] <= judge["ci_high"]
    assert invoke("agreement", "--data", "@pandalm:annotators", "--model", "x").exit_code == 2


def test_export_formats_round_trip_through_the_readers(tmp_path):
    arena = tmp_path / "mt.csv"
    assert invoke("data", "export", "--data", "@mt-bench", "--format", "arena-csv",
                  "--out", str(arena)).exit_code == 0  # fmt: skip
    again = invoke("leaderboard", "--data", str(arena), "--bootstrap", "50", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["n_battles"] == 1751
    trl = tmp_path / "mt.trl.jsonl"
    result = invoke("data", "export", "--data", "@mt-bench", "--format", "trl", "--out", str(trl))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in trl.read_text().splitlines()]
    assert len(rows) == 1751 - 417  # ties dropped
    assert {"prompt", "chosen", "rejected"} <= set(rows[0])
    listing = invoke("data", "list")
    assert "@pandalm" in listing.stdout and "@car" in listing.stdout


def test_fit_on_item_labels_of_a_multi_annotator_file(tmp_path):
    from crowdtune.datasets.comparisons import write_jsonl
    from crowdtune.preference.reliability import confusion, simulate_votes
    from crowdtune.records import Comparison, Verdict

    crowd = [confusion(0.85)] * 3 + [confusion(0.0)]
    frame, _ = simulate_votes(crowd, n_items=40, seed=1)
    rows = [
        Comparison(id=f"{r.id}/{r.annotator}", prompt=(r.prompt,), response_a=(r.response_a,),
                   response_b=(r.response_b,), verdict=Verdict(r.label), annotator=r.annotator)
        for r in frame.itertuples()
    ]  # fmt: skip
    path = write_jsonl(rows, tmp_path / "votes.jsonl")
    sizes, targets = {}, {}
    for labels in ("votes", "majority", "dawid-skene"):
        fit = invoke("preference", "fit", "--data", str(path), "--model", "length",
                     "--labels", labels, "--out", str(tmp_path / labels), "--json")  # fmt: skip
        assert fit.exit_code == 0, fit.output
        summary = json.loads(fit.stdout)
        assert summary["labels"] == labels and summary["n_votes"] == 160
        meta = json.loads((tmp_path / labels / "meta.json").read_text())
        assert meta["labels"] == labels and meta["targets"] == summary["targets"]
        sizes[labels], targets[labels] = (summary["n"], summary["n_items"]), summary["targets"]
    # dawid-skene: soft labels, each of the 40 items a row per class weighted by its posterior
    assert sizes["votes"] == (160, 160) and sizes["dawid-skene"] == (120, 40)
    assert sizes["majority"][0] == sizes["majority"][1] <= 40
    assert targets == {"votes": "hard", "majority": "hard",
                       "dawid-skene": "soft (posterior as sample weight)"}  # fmt: skip
    # the saved model is the one a weighted fit on the posteriors gives
    from crowdtune.preference import CalibratedPreferenceModel, LengthModel, load_model
    from crowdtune.preference.reliability import soft_labels
    from crowdtune.records import comparisons_frame

    votes = comparisons_frame(rows)
    soft = soft_labels(votes)
    expected = CalibratedPreferenceModel(estimator=LengthModel()).fit(
        soft, soft.label, sample_weight=soft.weight
    )
    saved, _ = load_model(tmp_path / "dawid-skene")
    np.testing.assert_allclose(saved.predict_proba(votes), expected.predict_proba(votes))
    bad = invoke("preference", "fit", "--data", str(path), "--labels", "soft",
                 "--out", str(tmp_path / "x"))  # fmt: skip
    assert bad.exit_code == 2 and "choose votes, majority, dawid-skene" in bad.output
    assert "sample" in invoke("preference", "fit", "--help").output
