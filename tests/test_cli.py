"""The command line: options, JSON output, files written, and errors before any work starts."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from crowdtune import __version__
from crowdtune.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"crowdtune {__version__}"


def test_grouping_json_has_the_documented_fields(movielens_available):
    result = invoke(
        "simulate", "grouping", "--dataset", "movielens", "--users", "30", "--groups", "3",
        "--rounds", "20", "--runs", "12", "--strategy", "interleaved", "--metric", "l1",
        "--seed", "4", "--json", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["runs"] == 12
    for key in ("start_distance", "final_distance"):
        stats = body[key]
        assert stats["ci_low"] < stats["mean"] < stats["ci_high"]
    assert 0.0 <= body["rounds_to_threshold"]["reached"] <= 1.0
    settings = body["settings"]
    assert settings["n_users"] == 30 and settings["n_groups"] == 3 and settings["metric"] == "l1"
    assert settings["strategies"] == ["interleaved"] and settings["seed"] == 4
    # The same seed gives the same numbers.
    again = json.loads(invoke(*result_args(settings)).stdout)
    assert again["final_distance"] == body["final_distance"]


def result_args(settings):
    return [
        "simulate", "grouping", "--users", str(settings["n_users"]), "--groups",
        str(settings["n_groups"]), "--rounds", str(settings["n_rounds"]), "--runs",
        str(settings["runs"]), "--strategy", settings["strategies"][0], "--metric",
        settings["metric"], "--seed", str(settings["seed"]), "--json", "--no-progress",
    ]  # fmt: skip


def test_grouping_out_writes_tidy_tables_summary_and_report(tmp_path, movielens_available):
    out = tmp_path / "run"
    result = invoke(
        "simulate", "grouping", "--users", "20", "--groups", "2", "--rounds", "10", "--runs", "6",
        "--strategy", "random", "--strategy", "epsilon-greedy", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(out / "runs.csv")
    rounds = pd.read_csv(out / "rounds.csv")
    points = pd.read_csv(out / "points.csv")
    assert len(runs) == 12 and set(runs["strategy"]) == {"random", "epsilon-greedy"}
    assert len(rounds) == 12 * 11 and rounds["distance"].dtype == float
    assert len(points) == 12 * 20 and points["points"].dtype == float
    for name in ("runs", "rounds", "points"):  # one value per cell: no printed arrays
        assert "[" not in (out / f"{name}.csv").read_text()
    assert runs["rounds_to_threshold"].dropna().between(0, 10).all()
    final = rounds[rounds["round"] == 10].set_index(["strategy", "run"])["distance"]
    assert final.sort_index().to_numpy() == pytest.approx(
        runs.set_index(["strategy", "run"])["final_distance"].sort_index().to_numpy()
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "epsilon-greedy"}
    html = (out / "report.html").read_text()
    assert "Distance to the expert by round" in html and "data:image/png;base64," in html


def test_synthetic_crowd_runs_beyond_movielens_size():
    result = invoke(
        "simulate", "grouping", "--dataset", "synthetic", "--users", "1500", "--groups", "10",
        "--rounds", "5", "--runs", "2", "--json", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["n_users"] == 1500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "greedy"], "choose one of: random, epsilon-greedy, interleaved"),
        (["--metric", "l3"], "choose one of: l2, l1, dot, cosine"),
        (["--users", "700"], "--dataset synthetic"),
        (["--users", "5", "--groups", "6"], "groups (6) cannot exceed users (5)"),
        (["--rounds", "0"], "rounds must be at least 1"),
        (["--delta", "0"], "delta must be in (0, 1]"),
        (["--delta", "1.5"], "delta must be in (0, 1]"),
        (["--runs", "0"], "runs must be at least 1"),
    ],
)
def test_bad_input_fails_before_work_with_a_clear_message(args, message):
    result = invoke("simulate", "grouping", "--no-progress", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_sweep_json_and_report(tmp_path, movielens_available):
    out = tmp_path / "sweep"
    result = invoke(
        "simulate", "sweep", "--users", "10,20", "--groups", "2,3", "--strategies",
        "random,interleaved", "--metrics", "l2", "--runs", "4", "--rounds", "8", "--workers", "1",
        "--json", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    cells = pd.DataFrame(body["cells"])
    assert len(cells) == 2 * 2 * 2
    assert set(cells["users"]) == {10, 20} and set(cells["groups"]) == {2, 3}
    assert (cells["final_distance_ci_low"] <= cells["final_distance_mean"]).all()
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 8 * 4
    assert "Final distance across the grid" in (out / "report.html").read_text()


def test_sweep_rejects_unknown_metric():
    result = invoke("simulate", "sweep", "--metrics", "l2,hamming", "--no-progress")
    assert result.exit_code == 2
    assert "unknown metric 'hamming'" in result.output


@pytest.mark.slow
def test_demo_writes_the_report(tmp_path, movielens_available):
    out = tmp_path / "demo"
    result = invoke(
        "demo", "--out", str(out), "--runs", "20", "--credit-runs", "8", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    for strategy in ("random", "epsilon-greedy", "interleaved"):
        assert strategy in html
    assert "Traced runs in genre space (PCA)" in html
    assert "random" in result.stdout and "final" in result.stdout
    assert "Credit: points against Shapley values" in html
    for scheme in ("rank", "marginal", "regression", "leave-one-out"):
        assert scheme in result.stdout
    # The train section prints the SmolLM2 pipeline on CaR (learnable on a CPU) and the GPU one.
    assert "crowdtune train reward --model smollm2 --lora --max-steps 100 --data @car:train" in (
        result.stdout
    )
    assert "--prompts @car:test --reward-model runs/reward" in result.stdout
    assert "--model HuggingFaceTB/SmolLM2-1.7B-Instruct" in result.stdout
    # The loop: sft rounds through a real server and worker, and the credit of each behaviour.
    assert "The Crowd-SFT loop: rounds through the server and worker" in html
    assert "Crowd-SFT loop: gold NLL of the base by round" in result.stdout
    loop = json.loads((out / "loop" / "summary.json").read_text())
    assert [row["round"] for row in loop["rounds"]] == [1, 2, 3]
    assert {p["behaviour"] for p in loop["contributors"]} == {"expert", "lazy", "adversarial"}
    assert len(loop["lineage"]) == 1 + 3 * 4  # the base, then four candidates a round
    # crowdtune's own progress and results only: no third-party progress bars.
    for bar in ("Loading weights", "Writing model shards", "Encoding tokens", "Map: "):
        assert bar not in result.output


def test_shapley_centroid_json_is_efficient(movielens_available) -> None:
    from crowdtune.crowd.simulation.experiments import CrowdSpec, build_setups, load_crowd_matrix
    from crowdtune.valuation import CentroidGame, total_value

    result = invoke("shapley", "centroid", "--users", "10", "--method", "exact", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"values", "stderr", "n_evaluations", "seconds", "method"}
    assert len(body["values"]) == 10 and body["n_evaluations"] == 2**10
    # The crowd is run 0 of the simulation with the same seed.
    spec = CrowdSpec(n_users=10)
    setups = build_setups(load_crowd_matrix(spec), spec, [0], 1)
    game = CentroidGame(setups.users[0], setups.expert[0])
    assert sum(body["values"]) == pytest.approx(total_value(game), abs=1e-9)

    sampled = invoke(
        "shapley", "centroid", "--users", "10", "--budget-evals", "5000", "--seed", "1", "--json"
    )
    body2 = json.loads(sampled.stdout)
    assert body2["n_evaluations"] <= 5000 and "permutation" in body2["method"]
    assert sum(body2["values"]) == pytest.approx(total_value(game), abs=1e-9)


def test_shapley_centroid_bad_input(movielens_available) -> None:
    result = invoke("shapley", "centroid", "--users", "25", "--method", "exact")
    assert result.exit_code == 2 and "permutation" in result.output
    result = invoke("shapley", "centroid", "--users", "25", "--budget-evals", "10")
    assert result.exit_code == 2 and "minimum is" in result.output
    result = invoke("shapley", "centroid", "--method", "banzhaf")
    assert result.exit_code == 2 and "unknown Shapley method 'banzhaf'" in result.output


def test_sweep_shapley_credit_table(movielens_available, tmp_path) -> None:
    result = invoke(
        "simulate", "sweep", "--users", "20", "--groups", "4", "--strategies", "random",
        "--metrics", "l2", "--schemes", "rank,regression", "--runs", "6", "--shapley", "exact",
        "--shapley-runs", "4", "--workers", "1", "--json", "--no-progress",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    credit = pd.DataFrame(json.loads(result.stdout)["credit"])
    assert sorted(credit["scheme"].unique()) == ["rank", "regression"]
    assert sorted(credit["reference"].unique()) == ["exact", "kernel"]
    assert (credit["runs"] == 4).all()
    assert (
        (credit["spearman_low"] <= credit["spearman"])
        & (credit["spearman"] <= credit["spearman_high"])
    ).all()
    assert (tmp_path / "credit.csv").exists()
    assert "Credit against Shapley values" in (tmp_path / "report.html").read_text()
