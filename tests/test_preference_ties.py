"""Ties as their own signal: similarity features of the unordered pair, the tie-aware model,
and the tie-only scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crowdtune.preference import TieAwareModel, make_model, swap_frame, tie_scores
from crowdtune.preference.features import (
    EMBEDDING_SIMILARITY_FEATURES,
    SIMILARITY_FEATURES,
    embedding_similarity_features,
    similarity_features,
)
from crowdtune.preference.ties import TIE_FEATURE_SETS

WORDS = "the a good clear reply step list code fact answer model detail".split()


def tie_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Pairs where a near-copy of the same answer ties and different answers go to the longer."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(WORDS, rng.integers(5, 30)))
        if i % 3 == 0:
            b, label = a + " ok", 2
        else:
            b = " ".join(rng.choice(WORDS, rng.integers(5, 30)))
            label = int(len(b) > len(a))
        rows.append((f"q{i % 40}", a, b, label))
    return pd.DataFrame(rows, columns=["prompt", "response_a", "response_b", "label"])


def test_similarity_features_are_symmetric_and_named():
    frame = tie_frame(30)
    features = similarity_features(frame)
    assert features.shape == (30, len(SIMILARITY_FEATURES))
    np.testing.assert_array_equal(similarity_features(swap_frame(frame)), features)


def test_similarity_features_say_what_is_alike():
    frame = pd.DataFrame(
        {
            "prompt": ["p", "p", "p"],
            "response_a": ["I'm sorry, I cannot help.", "It is Paris.", "- one\n- two\n\nend"],
            "response_b": ["I apologize, I can't do that.", "It is Paris!", "An essay " * 20],
        }
    )
    f = pd.DataFrame(similarity_features(frame), columns=SIMILARITY_FEATURES)
    assert f["both_refusal"].tolist() == [1, 0, 0]
    assert f["near_identical"].tolist() == [0, 1, 0]
    assert f["both_short"].tolist() == [1, 1, 0]
    assert f["same_lists"].tolist() == [1, 1, 0]
    assert f.loc[1, "char_ratio"] > f.loc[2, "char_ratio"]


def test_tie_aware_model_gives_near_identical_answers_a_higher_tie_probability():
    train = tie_frame(240, seed=0)
    model = make_model("tie-aware").fit(train, train["label"].to_numpy())
    assert isinstance(model, TieAwareModel)
    test = tie_frame(90, seed=1)
    proba = model.predict_proba(test)
    alike = test["label"].to_numpy() == 2
    assert proba[alike, 2].mean() > proba[~alike, 2].mean() + 0.3
    np.testing.assert_allclose(model.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_tie_aware_model_without_training_ties_predicts_no_ties():
    train = tie_frame(60)
    train = train[train["label"] != 2]
    with pytest.warns(UserWarning, match="no ties"):
        model = TieAwareModel().fit(train, train["label"].to_numpy())
    assert (model.predict_proba(train)[:, 2] == 0).all()


def test_tie_aware_model_refuses_non_positive_regularisation():
    frame = tie_frame(30)
    with pytest.raises(ValueError, match="C_tie"):
        TieAwareModel(C_tie=0).fit(frame, frame["label"].to_numpy())


def test_tie_scores_of_a_perfect_and_an_uninformed_tie_probability():
    y = np.array([0, 1, 2, 2])
    sure = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=float)
    half = np.array([[0.25, 0.25, 0.5]] * 4)
    assert tie_scores(y, sure)["tie_brier"] == pytest.approx(0.0)
    assert tie_scores(y, sure)["tie_log_loss"] < 1e-9
    scores = tie_scores(y, half)
    assert scores["tie_brier"] == pytest.approx(0.25)
    assert scores["tie_log_loss"] == pytest.approx(np.log(2))
    assert scores["tie_share"] == 0.5 and scores["n"] == 4


def test_tie_aware_model_refuses_an_unknown_tie_feature_set():
    frame = tie_frame(30)
    with pytest.raises(ValueError, match="tie feature set"):
        TieAwareModel(tie_features="semantic").fit(frame, frame["label"].to_numpy())


@pytest.mark.parametrize("tie_features", ["lexical", "similarity", "all"])
def test_every_tie_feature_set_learns_that_near_copies_tie(tie_features):
    train, test = tie_frame(240, seed=0), tie_frame(90, seed=1)
    model = TieAwareModel(tie_features=tie_features, C_tie=1.0)
    proba = model.fit(train, train["label"].to_numpy()).predict_proba(test)
    alike = test["label"].to_numpy() == 2
    assert proba[alike, 2].mean() > proba[~alike, 2].mean() + 0.3


# Embedding similarity: real MiniLM (as embedding-gbdt's tests), on a few hundred short texts that
# the disk cache keeps after the first run.


def test_embedding_similarity_is_symmetric_and_one_for_identical_answers():
    frame = tie_frame(24, seed=2)
    frame.loc[0, "response_b"] = frame.loc[0, "response_a"]
    features = embedding_similarity_features(frame)
    assert features.shape == (24, len(EMBEDDING_SIMILARITY_FEATURES))
    np.testing.assert_array_equal(embedding_similarity_features(swap_frame(frame)), features)
    cosine, gap = features[:, 0], features[:, 1]
    assert cosine[0] == pytest.approx(1.0, abs=1e-6) and gap[0] == pytest.approx(0.0, abs=1e-6)
    assert ((cosine >= -1) & (cosine <= 1)).all() and (gap >= 0).all()
    # A near-copy (``a + " ok"``, every third row) is closer in meaning than an unrelated answer.
    near = np.arange(24) % 3 == 0
    assert cosine[near].mean() > cosine[~near].mean()


def test_embedding_similarity_option_round_trips_through_clone_and_set_params():
    model = TieAwareModel(embedding_similarity=True, encoder="m2v", C_tie=0.5)
    params = clone(model).get_params()
    assert params["embedding_similarity"] is True and params["encoder"] == "m2v"
    assert TieAwareModel().set_params(embedding_similarity=True).embedding_similarity is True
    assert TieAwareModel().get_params()["embedding_similarity"] is False


def test_tie_aware_model_with_embedding_similarity_fits_symmetric_and_learns_ties():
    train, test = tie_frame(120, seed=0), tie_frame(45, seed=1)
    model = make_model("tie-aware", embedding_similarity=True, C_tie=1.0)
    proba = model.fit(train, train["label"].to_numpy()).predict_proba(test)
    # Two more tie columns than the lexical set: the logistic tie part sees them.
    n_tie = len(model.tie_model_[-1].coef_[0])
    assert n_tie == len(TIE_FEATURE_SETS["lexical"]) + len(EMBEDDING_SIMILARITY_FEATURES)
    np.testing.assert_allclose(model.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    alike = test["label"].to_numpy() == 2
    assert proba[alike, 2].mean() > proba[~alike, 2].mean() + 0.3


def test_tie_aware_model_with_embedding_similarity_takes_sample_weights():
    train = tie_frame(120, seed=0)
    y = train["label"].to_numpy()
    weights = np.where(np.arange(len(train)) < 30, 0.0, 1.0)
    weighted = TieAwareModel(embedding_similarity=True).fit(train, y, sample_weight=weights)
    subset = TieAwareModel(embedding_similarity=True).fit(train.iloc[30:], y[30:])
    np.testing.assert_allclose(weighted.predict_proba(train), subset.predict_proba(train))
