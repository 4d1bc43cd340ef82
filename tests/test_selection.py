"""CaR selection: clustering, ranking, diversity, the m2v encoder, instruction files, the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crowdtune.curation.select import (
    car_select,
    cluster,
    diversity,
    n_clusters,
    reduce_pca,
    select,
)
from crowdtune.datasets import DatasetFormatError
from crowdtune.datasets.car import load_car_selection
from crowdtune.datasets.instructions import read_instructions, write_instructions


class LengthScorer:
    """Longer texts score higher: cheap, and independent of the quality module."""

    def score(self, texts: list[str]) -> np.ndarray:
        return np.array([float(len(t)) for t in texts])


# ---------------------------------------------------------------------------------------------
# select


def test_select_takes_the_highest_scored_items_not_the_lowest() -> None:
    rng = np.random.default_rng(3)
    scores = rng.permutation(np.arange(20, dtype=float))
    chosen = select(scores, np.zeros(20, dtype=int), top_n=5, per_cluster=0)
    # Highest first: 19, 18, 17, 16, 15. The wrong sort direction would give 0..4.
    assert scores[chosen].tolist() == [19.0, 18.0, 17.0, 16.0, 15.0]
    assert set(chosen) == set(np.argsort(scores)[-5:])
    assert not set(chosen) & set(np.argsort(scores)[:5])


def test_select_adds_the_best_item_of_every_cluster_on_top_of_top_n() -> None:
    # Cluster 0 holds every high score; clusters 1 and 2 only low ones.
    scores = np.array([10, 9, 8, 7, 1.0, 2.0, 0.5, 3.0, 2.5])
    clusters = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    chosen = select(scores, clusters, top_n=3, per_cluster=1)
    # Top 3 (items 0, 1, 2), then each other cluster's best: item 7 (3.0) and item 5 (2.0).
    assert chosen.tolist() == [0, 1, 2, 7, 5]
    # The best item of cluster 0 is already in the top 3: it is not added twice.
    assert len(set(chosen.tolist())) == len(chosen)
    two = select(scores, clusters, top_n=3, per_cluster=2)
    assert set(two.tolist()) == {0, 1, 2, 7, 8, 5, 4}
    assert select(scores, clusters, top_n=3, per_cluster=0).tolist() == [0, 1, 2]


def test_select_breaks_ties_by_position() -> None:
    scores = np.array([1.0, 5.0, 5.0, 5.0, 2.0])
    assert select(scores, np.zeros(5, dtype=int), top_n=2, per_cluster=0).tolist() == [1, 2]


def test_select_refuses_fewer_items_than_top_n() -> None:
    with pytest.raises(ValueError, match="only 4"):
        select(np.arange(4.0), np.zeros(4, dtype=int), top_n=5)
    with pytest.raises(ValueError, match="NaN"):
        select(np.array([1.0, np.nan]), np.zeros(2, dtype=int), top_n=1)
    items = pd.DataFrame({"instruction": ["a", "b"], "output": ["c", "d"]})
    with pytest.raises(ValueError, match="only 2"):
        car_select(items, LengthScorer(), top_n=3, embed=lambda t: np.eye(len(t)))


def test_n_clusters_matches_car() -> None:
    assert n_clusters(52_002) == 161  # Alpaca
    assert n_clusters(1) == 1
    assert n_clusters(50) == 5
    with pytest.raises(ValueError):
        n_clusters(0)


# ---------------------------------------------------------------------------------------------
# PCA, k-means, diversity


def test_pca_keeps_at_least_95_percent_of_the_variance() -> None:
    rng = np.random.default_rng(0)
    # 40 dimensions, most of the variance in 5 of them.
    x = rng.normal(size=(500, 40)) * np.r_[np.full(5, 10.0), np.full(35, 0.5)]
    reduced, explained = reduce_pca(x, variance=0.95)
    assert explained >= 0.95
    assert 5 <= reduced.shape[1] < 40
    everything, all_of_it = reduce_pca(x, variance=1.0)
    assert everything.shape[1] == 40 and all_of_it == pytest.approx(1.0)


def test_cluster_finds_separated_groups_with_both_algorithms() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 20
    truth = np.repeat(np.arange(4), 150)
    x = centres[truth] + rng.normal(size=(600, 8))
    for threshold in (10**9, 100):  # full-batch KMeans, then MiniBatchKMeans
        labels = cluster(x, 4, seed=0, minibatch_threshold=threshold)
        assert labels.min() == 0 and labels.max() == 3
        # Same partition as the truth, up to renaming.
        assert len(set(zip(truth.tolist(), labels.tolist(), strict=True))) == 4
        assert np.array_equal(labels, cluster(x, 4, seed=0, minibatch_threshold=threshold))
    with pytest.raises(ValueError):
        cluster(x, 601)


def test_stratified_selection_covers_more_clusters_than_top_n_only() -> None:
    rng = np.random.default_rng(2)
    clusters = np.repeat(np.arange(5), 20)
    centres = np.eye(5, 16)
    embeddings = centres[clusters] + 0.05 * rng.normal(size=(100, 16))
    # Cluster 0 has every high score, so the top 10 by score all come from it.
    scores = np.where(clusters == 0, 10.0, 0.0) + rng.random(100)
    top_only = select(scores, clusters, top_n=10, per_cluster=0)
    stratified = select(scores, clusters, top_n=10, per_cluster=1)
    plain, spread = (
        diversity(embeddings, top_only, clusters),
        diversity(embeddings, stratified, clusters),
    )
    assert plain["clusters_covered"] == 1 and plain["cluster_share"] == pytest.approx(0.2)
    assert spread["clusters_covered"] == 5 and spread["cluster_share"] == 1.0
    assert spread["mean_cosine_distance"] > plain["mean_cosine_distance"]
    assert plain["distance_method"] == "exact"
    sampled = diversity(embeddings, stratified, clusters, exact_pairs_limit=10)
    assert sampled["distance_method"].startswith("sampled")
    assert sampled["mean_cosine_distance"] == pytest.approx(
        spread["mean_cosine_distance"], abs=0.02
    )


def test_car_select_end_to_end_with_a_stand_in_embedding() -> None:
    rng = np.random.default_rng(4)
    n = 200
    items = pd.DataFrame(
        {
            "instruction": [f"task {i}" for i in range(n)],
            "input": "",
            "output": ["x" * int(k) for k in rng.integers(1, 400, n)],
            "source": "test",
        }
    )
    vectors = rng.normal(size=(n, 12))
    lookup = {f"task {i}": vectors[i] for i in range(n)}

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack(
            [lookup[t.split(" Response: ")[0].removeprefix("Instruction: ")] for t in texts]
        )

    result = car_select(items, LengthScorer(), top_n=20, per_cluster=1, embed=embed, seed=0)
    assert result.k == n_clusters(n) == 10
    assert set(result.seconds) == {"score", "embed", "pca", "cluster", "select"}
    assert result.explained_variance >= 0.95
    longest = items["output"].str.len().sort_values(ascending=False, kind="stable").index[:20]
    assert set(longest) <= set(result.selected.index)
    assert {"score", "cluster", "source"} <= set(result.selected.columns)
    assert result.diversity["selection"]["clusters_covered"] == 10
    assert (
        result.diversity["random"]["n"]
        == result.diversity["top_n_only"]["n"]
        == len(result.indices)
    )
    json.dumps(result.summary())  # JSON-ready


# ---------------------------------------------------------------------------------------------
# the m2v encoder


def test_m2v_returns_unit_vectors_and_ranks_similar_texts_closer() -> None:
    from crowdtune.spaces.text import embed_texts

    texts = ["hello world", "hi there world", "the stock market crashed today"]
    vectors = embed_texts(texts, encoder="m2v", progress=False)
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3
    again = embed_texts(texts[::-1], encoder="m2v", progress=False)
    np.testing.assert_allclose(again[::-1], vectors, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# instruction files

ITEMS = pd.DataFrame(
    {
        "instruction": ["Add the numbers.", "Name a colour.", 'Quote "this", please.'],
        "input": ["2, 3", "", "line one\nline two"],
        "output": ["5", "Blue.", "“this” — ünïcode"],
        "source": ["a", "b", "c"],
    }
)


@pytest.mark.parametrize("name", ["items.jsonl", "items.json", "items.csv", "items.jsonl.gz"])
def test_instruction_files_round_trip(tmp_path: Path, name: str) -> None:
    path = write_instructions(ITEMS, tmp_path / name)
    pd.testing.assert_frame_equal(read_instructions(path), ITEMS)


def test_instruction_reader_defaults_a_missing_input(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi.", "input": None},
                                {"instruction": "Count.", "output": "1 2 3"}]))  # fmt: skip
    frame = read_instructions(path)
    assert frame["input"].tolist() == ["", ""]
    assert list(frame.columns) == ["instruction", "input", "output"]


def _jsonl(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = b'{"instruction": "a", "input": "", "output": "b"}'


def test_instruction_errors_name_the_line(tmp_path: Path) -> None:
    missing = _jsonl(tmp_path, [GOOD, GOOD, b'{"instruction": "a", "input": ""}'])
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl.*line 3: missing field 'output'"):
        read_instructions(missing)
    malformed = _jsonl(tmp_path, [GOOD, b'{"instruction": "a", "output": '])
    with pytest.raises(DatasetFormatError, match="line 2: malformed JSON"):
        read_instructions(malformed)
    not_utf8 = _jsonl(tmp_path, [GOOD, '{"instruction": "é", "output": "b"}'.encode("latin-1")])
    with pytest.raises(DatasetFormatError, match="line 2: not UTF-8"):
        read_instructions(not_utf8)
    number = _jsonl(tmp_path, [GOOD, b'{"instruction": 7, "output": "b"}'])
    with pytest.raises(DatasetFormatError, match="line 2: field 'instruction' must be a string"):
        read_instructions(number)
    array = tmp_path / "bad.json"
    array.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "a"}]')
    with pytest.raises(DatasetFormatError, match="item 2: missing field 'output'"):
        read_instructions(array)
    array.write_text('[{"instruction": "a",\n "output": "b"},\n {oops}]')
    with pytest.raises(DatasetFormatError, match="line 3: malformed JSON"):
        read_instructions(array)
    table = tmp_path / "bad.csv"
    table.write_text("instruction,input\na,b\n")
    with pytest.raises(DatasetFormatError, match="lacks field"):
        read_instructions(table)
    with pytest.raises(FileNotFoundError):
        read_instructions(tmp_path / "nothing.jsonl")
    with pytest.raises(ValueError, match=".jsonl, .json or .csv"):
        write_instructions(ITEMS, tmp_path / "items.txt")


def test_gzipped_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(GOOD + b"\n" + GOOD + b"\n" + b'{"instruction": "\xff"}\n'))
    with pytest.raises(DatasetFormatError, match="line 3"):
        read_instructions(path)


def test_load_car_selection_has_the_published_1013_items() -> None:
    frame = load_car_selection()
    assert len(frame) == 1013
    assert {"instruction", "input", "output", "score", "label"} <= set(frame.columns)
    assert frame["score"].between(0.7, 1.6).all()
    assert frame["label"].dtype.kind == "i"


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_select_writes_the_selection_with_score_and_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crowdtune.cli.curate as curate

    monkeypatch.setattr(curate, "make_quality_scorer", lambda name, encoder: LengthScorer())
    app = typer.Typer()
    app.add_typer(curate.curate_app, name="curate")
    data = tmp_path / "items.jsonl"
    topics = ["cooking pasta", "stock markets", "football results", "python programming"]
    rows = [
        {"instruction": f"Tell me about {topics[i % 4]}.", "input": "",
         "output": f"Here is something about {topics[i % 4]}. " * (1 + i % 7)}
        for i in range(80)
    ]  # fmt: skip
    write_instructions(pd.DataFrame(rows), data)
    out = tmp_path / "selected.csv"
    args = ["curate", "select", "--data", str(data), "--out", str(out), "--top-n", "10",
            "--encoder", "m2v", "--no-progress", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    selected = read_instructions(out)
    assert {"score", "cluster"} <= set(selected.columns)
    assert len(selected) == summary["n_selected"] >= 10
    assert summary["k"] == n_clusters(80)
    assert set(summary["diversity"]) == {"selection", "random", "top_n_only"}
    # Top 10 by length come first.
    scores = selected["score"].astype(float).to_numpy()
    assert np.all(np.diff(scores[:10]) <= 0)
    assert scores[:10].min() >= np.sort([len(r["output"]) for r in rows])[-10]
    bad = CliRunner().invoke(app, ["curate", "select", "--data", str(data), "--out",
                                   str(tmp_path / "x.txt")])  # fmt: skip
    assert bad.exit_code == 2
    too_many = CliRunner().invoke(
        app, ["curate", "select", "--data", str(data), "--out", str(out), "--top-n", "500"]
    )
    assert too_many.exit_code == 2 and "fewer than --top-n" in too_many.output


def test_cli_select_with_the_quality_modules_length_scorer(tmp_path: Path) -> None:
    from crowdtune.cli.curate import curate_app

    app = typer.Typer()
    app.add_typer(curate_app, name="curate")
    data, out = tmp_path / "items.csv", tmp_path / "selected.json"
    rows = [{"instruction": f"Question {i}?", "output": "word " * (i % 13)} for i in range(30)]
    write_instructions(pd.DataFrame(rows), data)
    args = ["curate", "select", "--data", str(data), "--out", str(out), "--top-n", "5",
            "--scorer", "length", "--encoder", "m2v", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "top by score only" in result.stdout
    selected = read_instructions(out)
    assert selected["score"].tolist()[:5] == sorted(selected["score"].tolist()[:5], reverse=True)
    assert selected["score"].iloc[0] == max(len("word " * (i % 13)) - 1 for i in range(30))
    unknown = CliRunner().invoke(app, [*args[:-5], "--scorer", "embedding"])
    assert unknown.exit_code == 2 and "needs fitting" in unknown.output
