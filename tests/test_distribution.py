"""Linguistic distribution analysis: features, tests, divergences, mismatch flags, scores, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crowdtune.cli.analyze import analyze_app
from crowdtune.curation.distribution import (
    MAIN_FEATURES,
    compare_distributions,
    feature_tests,
    mahalanobis_mismatch,
    mismatch_rule,
    score_agreement,
)
from crowdtune.curation.divergence import jensen_shannon
from crowdtune.curation.linguistic import text_features
from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.registry import load_texts

FORMAL = [
    "The committee reviewed the annual financial statements and approved the proposed budget "
    "for the following fiscal year after a lengthy deliberation.",
    "Researchers at the university published a comprehensive analysis of regional climate data, "
    "which indicated a gradual increase in average summer temperatures.",
    "The municipal council announced that the renovation of the historic library would begin in "
    "March and continue for approximately eighteen months.",
    "In accordance with the regulations, all applicants must submit their documentation before "
    "the deadline specified in the official announcement.",
    "The company reported a significant improvement in quarterly revenue, attributing the growth "
    "to increased demand for its industrial products.",
    "The government introduced a new policy intended to reduce administrative costs while "
    "maintaining the quality of public services.",
]
CHAT = ["lol ok", "omg yes!!", "haha no way", "sure thing :)", "nah", "wow cool", "yep", "ugh why"]


@pytest.fixture(scope="module")
def formal():
    return text_features(FORMAL * 5, n_process=1)


@pytest.fixture(scope="module")
def chat():
    return text_features(CHAT * 4, n_process=1)


def test_features_of_known_texts():
    analysis = text_features(
        ["The cat sat on the mat. The dog barked. It rained.", "", "   ",
         "go home go home go home go home", "I love this wonderful day!"],
        n_process=1,
    )  # fmt: skip
    f = analysis.features
    assert f["empty"].tolist() == [False, True, True, False, False]
    assert f.loc[0, "n_sentences"] == 3
    assert f.loc[0, "n_tokens"] == 14  # 11 words and 3 full stops
    assert f.loc[0, "mean_sentence_tokens"] == pytest.approx(14 / 3)
    # The, the, The: DET; cat, mat, dog: NOUN; 3 full stops: PUNCT
    assert f.loc[0, "pos_DET"] == pytest.approx(3 / 14)
    assert f.loc[0, "pos_NOUN"] == pytest.approx(3 / 14)
    assert f.loc[0, "pos_PUNCT"] == pytest.approx(3 / 14)
    pos = f[[c for c in f.columns if c.startswith("pos_")]]
    assert pos.loc[[0, 3, 4]].sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert f.loc[3, "repetition"] > 0.8 and f.loc[0, "repetition"] == 0.0
    assert f.loc[3, "type_token_ratio"] == pytest.approx(2 / 8)
    assert f.loc[4, "sentiment_compound"] > 0.5
    assert f.loc[1, "n_tokens"] == 0 and np.isnan(f.loc[1, "sentiment_compound"])
    # lemmas: sat -> sit, barked -> bark; punctuation left out
    row = np.asarray(analysis.lemma_counts[0].todense()).ravel()
    counts = dict(zip(analysis.lemmas, row, strict=True))
    assert counts["sit"] == 1 and counts["bark"] == 1 and counts["the"] == 3 and "." not in counts
    assert analysis.lemma_counts[3].sum() == 8
    assert analysis.lemma_counts[1].sum() == 0


def test_identical_sets_do_not_differ(formal):
    result = compare_distributions(formal, formal, n_boot=50, n_permutations=50)
    assert result.jsd["pos"].jsd < 1e-12 and result.jsd["lemma"].jsd < 1e-12
    assert result.jsd["lemma"].p_value > 0.5
    tested = result.tests.dropna(subset=["ks_p"])
    assert (tested["ks_p_adjusted"] > 0.5).all() and (tested["mannwhitney_p_adjusted"] > 0.5).all()
    assert (
        np.allclose(tested["cliffs_delta"], 0.0) and result.to_dict()["significant_features"] == []
    )


def test_shifted_sets_are_flagged(formal, chat):
    result = compare_distributions(formal, chat, n_boot=50, n_permutations=50)
    summary = result.to_dict()
    assert {"n_tokens", "mean_sentence_tokens"} <= set(summary["significant_features"])
    row = result.tests.set_index("feature").loc["n_tokens"]
    assert row["cliffs_delta"] == -1.0 and row["smd"] < -2
    assert result.jsd["lemma"].jsd > result.jsd["lemma"].null_q95
    assert result.jsd["lemma"].p_value < 0.05
    assert result.mismatch["rule_mismatch"].all()  # every chat text is far too short
    assert all("n_tokens-" in names for names in result.mismatch["rule_features"])
    assert summary["mismatch"]["rule_rate_on_train"] < 0.5
    json.dumps(summary)  # JSON-ready


def test_empty_texts_are_counted_not_tested(formal):
    with_empty = text_features(["", "Short one.", "  ", "Another short text here."], n_process=1)
    result = compare_distributions(formal, with_empty, n_boot=10, n_permutations=10)
    counts = result.counts()
    assert counts["n_test_empty"] == 2 and counts["n_train_empty"] == 0
    assert result.mismatch["empty"].tolist() == [True, False, True, False]
    assert not result.mismatch.loc[result.mismatch["empty"], "rule_mismatch"].any()
    assert result.to_dict()["mismatch"]["n_tested"] == 2


def test_mismatch_rule_by_hand():
    train = pd.DataFrame({"empty": False, "a": [0.0, 1.0, 2.0, 3.0, 4.0], "b": [10.0] * 4 + [20.0]})
    # a: mean 2, SD 1.5811 -> [-1.099, 5.099]; b: mean 12, SD 4.4721 -> [3.235, 20.765]
    test = pd.DataFrame({"empty": [False, False, False, True], "a": [5.0, 5.2, -2.0, 99.0],
                         "b": [12.0, 21.0, 0.0, 99.0]})  # fmt: skip
    flags = mismatch_rule(train, test, ["a", "b"])
    assert flags["rule_mismatch"].tolist() == [False, True, True, False]
    assert flags["rule_features"].tolist() == ["", "a+;b+", "a-;b-", ""]
    assert flags["rule_n_features"].tolist() == [0, 2, 2, 0]


def test_mahalanobis_uses_correlations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    train = pd.DataFrame({"empty": False, "a": x, "b": x + 0.1 * rng.normal(size=2000)})
    # (1.5, 1.5) is on the train line, (1.5, -1.5) is not; both are within 1.96 SD per feature
    test = pd.DataFrame({"empty": False, "a": [1.5, 1.5], "b": [1.5, -1.5]})
    assert not mismatch_rule(train, test, ["a", "b"])["rule_mismatch"].any()
    flags = mahalanobis_mismatch(train, test, ["a", "b"])
    assert flags["mahalanobis_mismatch"].tolist() == [False, True]
    self_rate = mahalanobis_mismatch(train, train, ["a", "b"])["mahalanobis_mismatch"].mean()
    # near the nominal 5% on Gaussian data; the shrinkage widens the narrow a - b direction a
    # little, so slightly fewer are flagged
    assert 0.015 < self_rate < 0.08


def test_feature_tests_and_jsd_on_arrays():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"empty": False, "x": rng.normal(size=300)})
    test = pd.DataFrame({"empty": False, "x": rng.normal(0.8, 1.0, size=300)})
    row = feature_tests(train, test, ["x"]).iloc[0]
    assert row["mannwhitney_p"] < 1e-10 and 0.5 < row["smd"] < 1.1
    assert row["smd_low"] < row["smd"] < row["smd_high"]
    assert row["cliffs_delta_low"] < row["cliffs_delta"] < row["cliffs_delta_high"]
    counts = np.array([[5, 0], [5, 0]])
    result = jensen_shannon(counts, np.array([[0, 5], [0, 5]]), n_boot=20, n_permutations=20)
    assert result.jsd == pytest.approx(1.0)


def test_score_agreement_on_correlated_scores():
    rng = np.random.default_rng(2)
    human = rng.normal(size=400)
    mismatched = np.arange(400) >= 300
    reward = (
        np.where(mismatched, rng.normal(size=400), human + 0.3 * rng.normal(size=400))
        + 2 * mismatched
    )
    result = score_agreement(human, reward, mismatched, n_boot=200)
    matched = result.correlations["matched"]["pearson"]
    unmatched = result.correlations["mismatched"]["spearman"]
    assert matched is not None and matched.estimate > 0.9 and matched.low > 0.85
    assert unmatched is not None and unmatched.low < 0 < unmatched.high
    assert result.n_matched == 300 and result.n_mismatched == 100
    assert result.differences["reward"]["cliffs_delta"] > 0.5
    assert result.differences["reward"]["p"] < 1e-6
    assert result.differences["human"]["p"] > 0.01
    json.dumps(result.to_dict())


def test_load_texts_files(tmp_path):
    (tmp_path / "a.txt").write_text("first\n\nthird\n", encoding="utf-8")
    assert load_texts(str(tmp_path / "a.txt"))["text"].tolist() == ["first", "", "third"]
    (tmp_path / "b.jsonl").write_text(
        '{"text": "x", "human_score": 1, "reward_score": 0.5}\n\n{"text": "y", "id": "q"}\n',
        encoding="utf-8",
    )
    frame = load_texts(str(tmp_path / "b.jsonl"))
    assert frame["id"].tolist() == ["b-1", "q"] and frame["human_score"].iloc[0] == 1.0
    assert np.isnan(frame["reward_score"].iloc[1])
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n{"prompt": "y"}\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"c\.jsonl.*line 2: missing field 'text'"):
        load_texts(str(tmp_path / "c.jsonl"))
    (tmp_path / "d.txt").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(DatasetFormatError, match=r"d\.txt.*line 2: not UTF-8"):
        load_texts(str(tmp_path / "d.txt"))
    (tmp_path / "e.csv").write_text('id,text,human_score\n1,"a, b",3\n2,,x\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"e\.csv.*line 3: expected a number"):
        load_texts(str(tmp_path / "e.csv"))
    with pytest.raises(ValueError, match="unknown file type"):
        load_texts(str(tmp_path / "f.parquet"))


def test_load_texts_datasets():
    goemotions = load_texts("@goemotions:dev")
    assert len(goemotions) == 5426 and list(goemotions.columns) == ["id", "text"]
    prompts = load_texts("@hh-rlhf:helpful-base")
    assert len(prompts) == 2354 and not prompts["text"].str.contains("\n\nAssistant:").any()
    assert len(load_texts("@car")) == 254
    with pytest.raises(ValueError, match="option of @goemotions"):
        load_texts("@goemotions:validation")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(analyze_app, name="analyze")
    return app


def test_helpful_vs_harmless_prompts_differ_and_cli_writes_files(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), [
        "analyze", "distribution", "--train", "@hh-rlhf:helpful-base",
        "--test", "@hh-rlhf:harmless-base", "--out", str(out), "--max-texts", "300",
        "--n-process", "1", "--n-boot", "50", "--json", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_train"] == 300 and summary["n_test"] == 300
    assert len(summary["significant_features"]) >= 1
    assert summary["jsd"]["lemma"]["jsd"] > summary["jsd"]["lemma"]["null_q95"]
    for name in ("features.csv", "tests.csv", "mismatch.csv", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    features = pd.read_csv(out / "features.csv")
    assert features["set"].value_counts().to_dict() == {"train": 300, "test": 300}
    assert set(MAIN_FEATURES) <= set(features.columns)
    mismatch = pd.read_csv(out / "mismatch.csv", keep_default_na=False)
    assert len(mismatch) == 300 and {"id", "rule_mismatch", "rule_features", "text"} <= set(
        mismatch
    )
    assert "<img" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_score_agreement_and_clean_errors(tmp_path):
    rng = np.random.default_rng(3)
    lines = []
    for i in range(40):
        human = float(rng.normal())
        text = " ".join(["word"] * (3 + i % 7)) + "."
        lines.append(json.dumps({"text": text, "human_score": human, "reward_score": human + 0.1}))
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "train.txt").write_text("\n".join(FORMAL + CHAT) + "\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(_app(), [
        "analyze", "distribution", "--train", str(tmp_path / "train.txt"),
        "--test", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "out"),
        "--n-process", "1", "--n-boot", "20", "--json", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    agreement = json.loads(result.stdout)["score_agreement"]
    assert agreement["n"] == 40
    assert agreement["correlations"]["all"]["pearson"]["estimate"] == pytest.approx(1.0)
    bad = runner.invoke(_app(), [
        "analyze", "distribution", "--train", "@nope", "--test", "@car", "--out",
        str(tmp_path / "x"), "--no-progress",
    ])  # fmt: skip
    assert bad.exit_code == 2 and "--train @nope" in bad.output
