"""Instruction quality scorers (curation/quality.py, cross_encoder.py, scoring.py) and CaR expert
revisions (datasets/car.py)."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from crowdtune.curation.cross_encoder import CrossEncoderScorer
from crowdtune.curation.quality import EmbeddingScorer, LengthScorer, bradley_terry_logistic
from crowdtune.curation.scoring import (
    SCORERS,
    default_scorer,
    evaluate_scorer,
    load_scorer,
    make_scorer,
    pairwise_accuracy,
    save_scorer,
)
from crowdtune.datasets.car import (
    CAR_PAIR_COLUMNS,
    CAR_PAIR_COUNTS,
    escape_statistics,
    item_text,
    load_car_pairs,
    split_item_text,
)
from crowdtune.datasets.home import DatasetFormatError


@pytest.fixture(scope="module")
def car_test() -> pd.DataFrame:
    return load_car_pairs("test")


# ------------------------------------------------------------------------------------ data


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_car_pairs_are_adjacent_rows_of_the_real_files(split: str) -> None:
    pairs = load_car_pairs(split)  # type: ignore[arg-type]
    assert len(pairs) == CAR_PAIR_COUNTS[split]
    assert list(pairs.columns) == list(CAR_PAIR_COLUMNS)
    assert pairs["id"].is_unique
    assert pairs["better_text"].str.startswith("Instruction: ").all()
    assert (pairs["better_text"] != pairs["worse_text"]).mean() > 0.99
    # Experts sometimes rewrote the instruction, but mostly the answer.
    assert 0.6 < (pairs["better_instruction"] == pairs["worse_instruction"]).mean() < 0.8


def test_escapes_are_decoded_on_both_sides(car_test: pd.DataFrame) -> None:
    train = load_car_pairs("train")
    for pairs in (car_test, train):
        better = escape_statistics(pairs["better"].tolist())
        worse = escape_statistics(pairs["worse"].tolist())
        # Raw originals: about a third have a literal backslash-n, no revision has one.
        assert better["backslash_n"] == worse["backslash_n"] == 0.0
        assert worse["backslash_u"] == 0.0 and worse["backslash_quote"] == 0.0
        assert worse["any_backslash"] <= better["any_backslash"] + 0.005
        assert worse["newline"] > 0.25  # the escapes became real newlines
    # The two cells cut inside an escape decode too.
    motto = train[train["worse"].str.startswith("Power, courage")]["worse_text"].iloc[0]
    assert "\\" not in motto and '"power Response:' in motto


def test_bad_pairing_names_the_row(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "car-expert-revised" / "expert-revised"
    folder.mkdir(parents=True)
    rows = pd.DataFrame(
        {
            "src": [f"Instruction: q{i} Response: a{i}" for i in range(4)],
            "score": [0, 1, 0, 0],
        }
    )
    with gzip.open(folder / "APE_score_test.csv.gz", "wt") as handle:
        rows.to_csv(handle, index=False)
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path))
    with pytest.raises(DatasetFormatError, match="row 4") as error:
        load_car_pairs("test")
    assert error.value.row == 4 and error.value.column == "score"


def test_item_text_format_and_split() -> None:
    assert item_text("Sum.", "2, 3", "5") == "Instruction: Sum. Input: 2, 3 Response: 5"
    assert (
        item_text(" Name a colour. ", "", " Blue. ")
        == "Instruction: Name a colour. Response: Blue."
    )
    assert split_item_text(item_text("Sum.", "2, 3", "5")) == ("Sum. Input: 2, 3", "5")
    assert split_item_text("just an answer") == ("", "just an answer")


def test_length_baseline_on_the_expert_test_pairs(car_test: pd.DataFrame) -> None:
    better, worse = car_test["better_text"].tolist(), car_test["worse_text"].tolist()
    accuracy = pairwise_accuracy(LengthScorer().fit(better, worse), better, worse)
    # Measured: 195 longer-is-better, 12 equal lengths (half each) -> 201/254 = 79.1%; the issue
    # quotes 80.7% (205/254) for "the longer answer wins", counted in a way not documented.
    assert accuracy == pytest.approx(201 / 254)
    assert abs(accuracy - 0.807) < 0.02


# --------------------------------------------------------------------------------- scorers


def _toy_pairs(n: int = 30) -> tuple[list[str], list[str]]:
    """Better answers are complete sentences with a list; worse ones are cut-off fragments of the
    same length, so length alone cannot tell them apart."""
    rng = np.random.default_rng(0)
    better, worse = [], []
    for i in range(n):
        k = int(rng.integers(2, 5))
        items = "\n".join(f"- point {j} about topic {i}." for j in range(k))
        good = f"Here are {k} points:\n{items}"
        bad = ("about topic " + str(i) + " point " * k)[: len(good)].ljust(len(good), "x")
        better.append(item_text(f"Explain topic {i}.", "", good))
        worse.append(item_text(f"Explain topic {i}.", "", bad))
    return better, worse


def test_bradley_terry_logistic_hand_checked() -> None:
    # 3 wins, 1 loss on one feature: unpenalised MLE sigma(w) = 3/4, so w = ln 3.
    model = bradley_terry_logistic([[1.0], [1.0], [1.0], [-1.0]], C=1e6)
    assert model.coef_[0, 0] == pytest.approx(math.log(3), abs=1e-4)
    assert model.intercept_ == pytest.approx(0.0)
    # With the penalty ||w||^2 / (2C) over both copies: 2 * sum_i d_i sigma(-w d_i) = w / C.
    C = 0.5
    w = bradley_terry_logistic([[1.0], [1.0], [1.0], [-1.0]], C=C).coef_[0, 0]
    gradient = 2 * (3 / (1 + math.exp(w)) - 1 / (1 + math.exp(-w)))
    assert gradient == pytest.approx(w / C, abs=1e-4)


@pytest.mark.parametrize("model", ["linear", "gbdt"])
def test_embedding_scorer_learns_a_toy_rule(model: str) -> None:
    better, worse = _toy_pairs()
    params = {"n_estimators": 50, "min_child_samples": 2} if model == "gbdt" else {"C": 1.0}
    scorer = EmbeddingScorer(views="", model=model, **params).fit(better[:20], worse[:20])
    assert pairwise_accuracy(scorer, better[20:], worse[20:]) == 1.0
    assert pairwise_accuracy(LengthScorer().fit(better, worse), better, worse) == 0.5
    assert scorer.score(better[:3]).shape == (3,)


def test_embedding_scorer_with_minilm_views() -> None:
    better, worse = _toy_pairs(8)
    scorer = EmbeddingScorer(views="response", C=1.0).fit(better, worse)
    assert len(scorer.feature_names()) == scorer.n_features_in_ == 384 + 1 + 27
    assert pairwise_accuracy(scorer, better, worse) == 1.0


@pytest.fixture(scope="module")
def cross_encoder() -> Iterator[CrossEncoderScorer]:
    import torch

    # One thread: on a small shared CPU, OpenMP threads spinning against each other make the
    # tiny model many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    better = [item_text(f"Task {i}.", "", "yes, done well. " * 3) for i in range(16)]
    worse = [item_text(f"Task {i}.", "", "no no no no") for i in range(16)]
    scorer = CrossEncoderScorer(
        max_steps=30, batch_size=8, max_length=48, learning_rate=3e-3, lora_r=4, random_state=0
    )
    scorer.toy_ = (better, worse)  # type: ignore[attr-defined]
    try:
        yield scorer.fit(better, worse)
    finally:
        torch.set_num_threads(threads)


def test_cross_encoder_pairwise_loss_goes_down(cross_encoder: CrossEncoderScorer) -> None:
    history = cross_encoder.loss_history_
    assert len(history) == 30
    assert history[0] == pytest.approx(math.log(2), abs=0.3)  # margins start near zero
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
    better, worse = cross_encoder.toy_  # type: ignore[attr-defined]
    assert pairwise_accuracy(cross_encoder, better, worse) == 1.0


def test_cross_encoder_truncates_instruction_and_response() -> None:
    scorer = CrossEncoderScorer(max_length=24)
    _, tokenizer = scorer._base_model(False)
    ids = scorer.encode([item_text("word " * 50, "", "answer " * 50)], tokenizer)
    assert len(ids[0]) <= 24
    text = tokenizer.decode(ids[0])
    assert "Instruction:" in text and "Response:" in text and "answer" in text


def test_save_load_round_trip(tmp_path, cross_encoder: CrossEncoderScorer) -> None:
    better, worse = _toy_pairs(10)
    for scorer in (LengthScorer(), EmbeddingScorer(views="", C=0.5)):
        scorer.fit(better, worse)
        loaded = load_scorer(save_scorer(scorer, tmp_path / f"{type(scorer).__name__}.joblib"))
        assert type(loaded) is type(scorer) and loaded.get_params() == scorer.get_params()
        np.testing.assert_allclose(loaded.score(better), scorer.score(better))
    loaded_ce = load_scorer(save_scorer(cross_encoder, tmp_path / "cross"), device="cpu")
    np.testing.assert_allclose(loaded_ce.score(better), cross_encoder.score(better), atol=1e-5)


def test_registry() -> None:
    assert set(SCORERS) == {"length", "embedding", "cross-encoder"}
    assert make_scorer("embedding", model="gbdt").model == "gbdt"
    with pytest.raises(ValueError, match="quality scorer"):
        make_scorer("iqs")


def test_evaluate_scorer_length_analysis(car_test: pd.DataFrame) -> None:
    better, worse = car_test["better_text"].tolist(), car_test["worse_text"].tolist()
    result = evaluate_scorer(LengthScorer().fit(better, worse), better, worse, n_bootstrap=500)
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
    assert result["n"] == 254
    assert result["accuracy"] == result["length_baseline_accuracy"]
    assert result["n_longer_better"] + result["n_longer_worse"] + result["n_equal_length"] == 254
    assert result["accuracy_longer_better"] == 1.0 and result["accuracy_longer_worse"] == 0.0
    assert result["agreement_with_length"] == 1.0

    class Reverse:
        def score(self, texts):
            return -LengthScorer().score(texts)

    reverse = evaluate_scorer(Reverse(), better, worse, n_bootstrap=500)
    assert reverse["accuracy"] == pytest.approx(1 - result["accuracy"])
    assert reverse["ci_low"] <= reverse["accuracy"] <= reverse["ci_high"]
    assert reverse["agreement_with_length"] == pytest.approx(result["n_equal_length"] / 254)


def test_default_scorer_is_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CROWDTUNE_CACHE", str(tmp_path))
    params = {"views": "", "C": 0.03}  # text features only: no embedding in tests
    first = default_scorer(params)
    files = list((tmp_path / "quality").glob("embedding-*.joblib"))
    assert len(files) == 1
    second = default_scorer(params)
    texts = load_car_pairs("test")["better_text"].tolist()[:20]
    np.testing.assert_allclose(first.score(texts), second.score(texts))
    # A cache that cannot be written (a file where the directory should be) is skipped.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    monkeypatch.setenv("CROWDTUNE_CACHE", str(blocked))
    assert isinstance(default_scorer(params), EmbeddingScorer)
