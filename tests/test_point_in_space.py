"""The point-in-space experiment: the arm logic with a fake trainer, sampler and scorer (exact and
fast), then the whole pipeline on the tiny model through the command line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.crowd.point_in_space import (
    ARMS,
    PointInSpaceConfig,
    finished_run,
    run_arms,
    summarize_emotions,
    summarize_point_in_space,
    target_distance_band,
    training_pool,
    trainings_per_replicate,
)

CENTRE = np.full(28, 0.1)
SMALL = {
    "model": "base",
    "k_single": (6, 12),
    "generations": 2,
    "candidates": 3,
    "subset_sizes": (4, 3),
    "n_samples": 5,
}


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Fakes:
    """A trainer whose models land at a hashed distance from the centre, a sampler whose texts
    name their model and seed, and a scorer that puts each text near its model's point."""

    def __init__(self) -> None:
        self.trained: list[tuple[str, list[str], str]] = []
        self.sampled: list[tuple[str, int]] = []

    def train(self, base: str, texts: Sequence[str], seed: int, name: str) -> str:
        self.trained.append((base, list(texts), name))
        return f"{base}>{name}:{','.join(texts)}"

    def sample(self, model: str, n: int, seed: int) -> list[str]:
        self.sampled.append((model, seed))
        return [f"{model}#{seed}#{j}" for j in range(n)]

    def score(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            model, seed, _ = text.rsplit("#", 2)
            offset = _unit(model) + 0.3 * _unit(model, seed)  # the model plus sampling noise
            rows.append(CENTRE + offset / np.sqrt(28))
        return np.array(rows)


def _run(replicate: int = 0, **overrides: object) -> tuple[pd.DataFrame, Fakes]:
    config = PointInSpaceConfig(**{**SMALL, **overrides})  # type: ignore[arg-type]
    fakes = Fakes()
    pool = [f"s{i}" for i in range(config.pool_size)]
    rows = run_arms(config, pool, CENTRE, fakes.train, fakes.sample, fakes.score, replicate)
    return pd.DataFrame(rows), fakes


def test_every_arm_has_a_row_per_generation_and_candidate() -> None:
    table, fakes = _run()
    reported = table[table["role"] != "candidate"]
    assert sorted(reported["arm"].unique()) == sorted(ARMS)
    for arm in ARMS:
        assert sorted(reported.loc[reported["arm"] == arm, "generation"]) == [0, 1, 2]
    candidates = table[table["role"] == "candidate"]
    assert len(candidates) == 2 * 2 * 3  # two sequential arms x 2 generations x 3 candidates
    assert reported["distance"].notna().all() and candidates["distance"].isna().all()
    assert (reported["ci_low"] <= reported["distance"] + 1e-12).all()
    assert (reported["distance"] <= reported["ci_high"] + 1e-12).all()
    single = reported[(reported["arm"] == "single") & (reported["generation"] > 0)]
    assert single["k"].tolist() == [6, 12]
    assert table.loc[
        (table["arm"] == "competitive") & (table["role"] == "winner"), "k"
    ].tolist() == [4, 7]
    # The random arm shares the first generation's candidates with the competitive one.
    assert len(fakes.trained) <= trainings_per_replicate(PointInSpaceConfig(**SMALL))  # type: ignore[arg-type]


def test_single_arm_trains_the_base_on_the_k_nearest_sentences() -> None:
    _, fakes = _run()
    single = [(base, texts) for base, texts, name in fakes.trained if name.startswith("single")]
    assert single == [("base", [f"s{i}" for i in range(6)]), ("base", [f"s{i}" for i in range(12)])]


def test_candidates_train_on_disjoint_subsets_from_the_previous_winner() -> None:
    table, fakes = _run()
    winners = table[(table["arm"] == "competitive") & (table["role"] == "winner")]
    first_winner = winners.loc[winners["generation"] == 1, "model"].item()
    for generation, size in ((1, 4), (2, 3)):
        runs = [(b, t) for b, t, n in fakes.trained if n.startswith(f"competitive-g{generation}")]
        assert len(runs) == 3
        texts = [set(t) for _, t in runs]
        assert all(len(t) == size for t in texts)
        assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
        assert {b for b, _ in runs} == {"base" if generation == 1 else first_winner}


def test_competitive_winner_is_the_candidate_nearest_on_selection_generations() -> None:
    table, _ = _run()
    rows = table[table["arm"] == "competitive"]
    for generation in (1, 2):
        part = rows[rows["generation"] == generation]
        candidates = part[part["role"] == "candidate"]
        winner = part[part["role"] == "winner"].iloc[0]
        best = candidates.loc[candidates["selection_distance"].idxmin()]
        assert winner["candidate"] == best["candidate"] and winner["model"] == best["model"]
        assert winner["selection_distance"] == candidates["selection_distance"].min()


def test_reported_distances_come_from_fresh_generations() -> None:
    table, fakes = _run()
    selection_seeds = set(table.loc[table["selection_seed"] >= 0, "selection_seed"])
    report_seeds = set(table.loc[table["sample_seed"] >= 0, "sample_seed"])
    assert selection_seeds and report_seeds and not (selection_seeds & report_seeds)
    # Each competitive winner was sampled twice: once to be picked, once to be reported.
    for _, winner in table[
        (table["arm"] == "competitive") & (table["role"] == "winner")
    ].iterrows():
        seeds = {seed for model, seed in fakes.sampled if model == winner["model"]}
        assert seeds == {winner["selection_seed"], winner["sample_seed"]}
        fresh = fakes.score(fakes.sample(winner["model"], 5, int(winner["sample_seed"])))
        assert winner["distance"] == pytest.approx(np.linalg.norm(fresh.mean(axis=0) - CENTRE))


def test_random_arm_draws_its_winner_independently_of_the_selection() -> None:
    differs = 0
    for replicate in range(8):
        table, _ = _run(replicate)
        winners = table[table["role"] == "winner"].set_index(["arm", "generation"])
        assert table.loc[table["arm"] == "random", "selection_distance"].isna().all()
        if winners.loc[("random", 1), "candidate"] != winners.loc[("competitive", 1), "candidate"]:
            differs += 1
            # A different lineage: its second generation trains on top of its own winner.
            assert winners.loc[("random", 2), "model"].startswith(
                winners.loc[("random", 1), "model"]
            )
    assert differs >= 2  # 8 replicates, a 2/3 chance each


def test_replicates_are_reproducible_and_summarised_with_intervals() -> None:
    first, _ = _run(0)
    again, _ = _run(0)
    pd.testing.assert_frame_equal(first, again)
    table = pd.concat([_run(r)[0] for r in range(3)], ignore_index=True)
    summary = summarize_point_in_space(table)
    assert summary["replicates"] == 3
    for arm in ARMS:
        assert [e["generation"] for e in summary["arms"][arm]] == [0, 1, 2]
        entry = summary["arms"][arm][2]
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"]
    assert [e["generation"] for e in summary["differences"]["competitive_minus_random"]] == [1, 2]
    assert summary["selection_bias"]["mean"] is not None


def test_emotions_are_compared_at_each_arms_last_generation_with_paired_differences() -> None:
    tables = {
        f"e{seed}": pd.concat([_run(r, seed=seed)[0] for r in range(2)], ignore_index=True)
        for seed in (0, 10, 20)
    }
    summary = summarize_emotions(tables)
    assert summary["emotions"] == ["e0", "e10", "e20"]
    assert summary["replicates"] == {"e0": 2, "e10": 2, "e20": 2}
    finals = {}
    for emotion, table in tables.items():
        winners = table[(table["role"] == "winner") & (table["generation"] == 2)]
        finals[emotion] = winners.groupby("arm")["distance"].mean()
        assert summary["per_emotion"][emotion]["competitive"] == pytest.approx(
            finals[emotion]["competitive"]
        )
        base = table.loc[table["role"] == "base", "distance"].mean()
        assert summary["per_emotion"][emotion]["base"] == pytest.approx(base)
    gaps = [f["competitive"] - f["single"] for f in finals.values()]
    difference = summary["differences"]["competitive_minus_single"]
    assert difference["mean"] == pytest.approx(np.mean(gaps))
    half = 4.302653 * np.std(gaps, ddof=1) / np.sqrt(3)  # t(0.975, 2 df): emotions are the units
    assert difference["ci_high"] - difference["mean"] == pytest.approx(half, rel=1e-5)
    final = summary["final"]["single"]
    assert final["mean"] == pytest.approx(np.mean([f["single"] for f in finals.values()]))
    with pytest.raises(ValueError, match="no emotions"):
        summarize_emotions({})


def test_config_rejects_subsets_that_do_not_fit_the_pool() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        PointInSpaceConfig(k_single=(10,), subset_sizes=(4, 3, 2))
    with pytest.raises(ValueError, match="one size per generation"):
        PointInSpaceConfig(generations=2)
    with pytest.raises(ValueError, match="n_samples"):
        PointInSpaceConfig(n_samples=0)


def test_training_pool_and_target_band() -> None:
    scores = np.array([[0.0, 0.0], [1.0, 1.0], [0.2, 0.1], [0.5, 0.5]])
    assert training_pool(scores, np.zeros(2), 3).tolist() == [0, 2, 3]
    rng = np.random.default_rng(0)
    members = rng.normal(0.0, 0.1, size=(101, 28))
    small, large = (target_distance_band(members, np.zeros(28), n) for n in (4, 40))
    assert small["low"] <= small["median"] <= small["high"]
    assert large["high"] < small["low"]  # more generations, a tighter mean


def test_point_in_space_on_the_tiny_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "experiment", "point-in-space", "--model", "tiny", "--emotion", "joy",
            "--out", str(out), "--samples", "3", "--max-new-tokens", "6",
            "--k-single", "4,6", "--subset-sizes", "3,2", "--candidates", "2",
            "--max-steps", "2", "--batch-size", "2", "--learning-rate", "0.05",
            "--no-progress", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["arms"]) == set(ARMS)
    assert summary["band"]["low"] <= summary["band"]["high"]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 3 + 2 + 2 * 2 * (2 + 1)
    assert table.loc[table["role"] != "candidate", "distance"].between(0, 6).all()
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and all(isinstance(s["text"], str) for s in samples)
    winner = table[(table["arm"] == "competitive") & (table["role"] == "winner")].iloc[-1]
    seeds = {s["seed"] for s in samples if s["model"] == winner["model"]}
    assert seeds == {winner["selection_seed"], winner["sample_seed"]}
    target = json.loads((out / "target.json").read_text())
    assert target["emotion"] == "joy" and len(target["pool_rows"]) == 6
    report = (out / "report.html").read_text()
    assert "Distance to the target by generation" in report and "data:image/png;base64" in report
    assert (Path(winner["model"]) / "adapter_config.json").is_file()


def test_a_sweep_over_emotions_keeps_finished_runs_and_compares_them(tmp_path: Path) -> None:
    options = [
        "experiment", "point-in-space", "--model", "tiny", "--emotion", "joy,anger",
        "--out", str(tmp_path), "--samples", "2", "--max-new-tokens", "4",
        "--k-single", "4,6", "--subset-sizes", "3,2", "--candidates", "2",
        "--max-steps", "1", "--batch-size", "2", "--no-progress", "--json",
    ]  # fmt: skip
    first = CliRunner().invoke(app, options)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["emotions"] == ["joy", "anger"]
    assert set(summary["final"]) == {"base", *ARMS}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["config"]["emotion"] == ["joy", "anger"]
    for emotion in ("joy", "anger"):
        assert (tmp_path / emotion / "report.html").is_file()
        assert json.loads((tmp_path / emotion / "target.json").read_text())["emotion"] == emotion
    stamps = {e: (tmp_path / e / "results.csv").stat().st_mtime_ns for e in ("joy", "anger")}
    again = CliRunner().invoke(app, options)  # both finished with these settings: nothing reruns
    assert again.exit_code == 0, again.output
    assert "kept" in again.stderr
    assert {e: (tmp_path / e / "results.csv").stat().st_mtime_ns for e in stamps} == stamps
    assert json.loads(again.stdout.strip().splitlines()[-1]) == summary
    config = PointInSpaceConfig(
        emotion="joy", model="tiny", k_single=(4, 6), generations=2, candidates=2,
        subset_sizes=(3, 2), n_samples=2, max_new_tokens=4, max_steps=1, batch_size=2,
    )  # fmt: skip
    assert finished_run(tmp_path / "joy", config) is not None
    assert finished_run(tmp_path / "joy", dataclasses.replace(config, n_samples=3)) is None
    assert finished_run(tmp_path / "nowhere", config) is None


def test_point_in_space_rejects_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        app, ["experiment", "point-in-space", "--emotion", "glee", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "glee" in bad.output
    bad = runner.invoke(
        app, ["experiment", "point-in-space", "--emotion", "joy,glee", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "unknown --emotion glee;" in bad.output
    bad = runner.invoke(
        app, ["experiment", "point-in-space", "--k-single", "4", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "do not fit" in bad.output
