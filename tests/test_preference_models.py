"""Preference predictors: the [A, B, TIE] contract, symmetry, learning, calibration, CV, saving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import log_loss

from crowdtune.preference import (
    CPU_MODELS,
    UNIFORM_LOG_LOSS,
    CalibratedPreferenceModel,
    DifferenceBucketModel,
    LengthModel,
    evaluate_proba,
    fit_pool_weights,
    load_model,
    make_model,
    prompt_groups,
    reliability_table,
    save_model,
    swap_frame,
)
from crowdtune.preference.calibration import (
    apply_temperature,
    apply_threshold_multiplier,
    fit_temperature,
    fit_threshold_multiplier,
)
from crowdtune.preference.cv import cross_validate, dataset_folds, grouped_folds
from crowdtune.preference.features import RESPONSE_FEATURES, repeated_ngram_share, text_features

WORDS = "the a model answer good clear helpful reply detail step list code fact".split()


def toy_frame(n: int = 300, seed: int = 0, tie_gap: int = 3) -> pd.DataFrame:
    """Pairs where the longer answer wins and near-equal lengths tie; a refusal always loses."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        la, lb = rng.integers(3, 40, size=2)
        a = " ".join(rng.choice(WORDS, la))
        b = " ".join(rng.choice(WORDS, lb))
        label = 2 if abs(int(la) - int(lb)) <= tie_gap else int(lb > la)
        if i % 7 == 0:
            a, label = "I'm sorry, I cannot help with that. " + a, 1
        rows.append((f"t{i}", f"question {i % 60} about {WORDS[i % len(WORDS)]}", a, b, label))
    frame = pd.DataFrame(rows, columns=["id", "prompt", "response_a", "response_b", "label"])
    frame["source"] = np.where(np.arange(n) % 2 == 0, "even", "odd")
    return frame


@pytest.fixture(scope="module")
def toy() -> tuple[pd.DataFrame, pd.DataFrame]:
    return toy_frame(300, seed=0), toy_frame(150, seed=1)


@pytest.mark.parametrize("name", [n for n in CPU_MODELS if n not in ("embedding-gbdt", "ensemble")])
def test_models_learn_symmetric_distributions(name, toy):
    train, test = toy
    model = make_model(name).fit(train, train["label"])
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(
        model.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]], atol=1e-9
    )
    assert log_loss(test["label"], proba, labels=[0, 1, 2]) < UNIFORM_LOG_LOSS - 0.1
    assert list(model.classes_) == [0, 1, 2]
    clone(model)  # get_params/set_params round trip


def test_features_gbdt_beats_length_when_refusals_matter(toy):
    train, test = toy
    losses = {
        name: log_loss(
            test["label"], make_model(name).fit(train, train["label"]).predict_proba(test)
        )
        for name in ("length", "features-gbdt")
    }
    assert losses["features-gbdt"] < losses["length"]


def test_embedding_gbdt_is_symmetric_and_learns(toy):
    train, test = toy
    model = make_model("embedding-gbdt", n_components=4, n_estimators=60).fit(train, train["label"])
    proba = model.predict_proba(test)
    np.testing.assert_allclose(
        model.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]], atol=1e-6
    )
    assert log_loss(test["label"], proba) < UNIFORM_LOG_LOSS - 0.1


def test_difference_buckets_predict_each_buckets_training_rates():
    frame = pd.DataFrame(
        {
            "prompt": ["p"] * 4,
            "response_a": ["xxxxxxxxxx", "x", "xxxxxx", "xxxxx"],
            "response_b": ["x", "xxxxxxxxxx", "xxxxx", "xxxxxx"],
            "label": [0, 1, 2, 2],
        }
    )
    model = DifferenceBucketModel(n_buckets=4, smoothing=0.0).fit(frame, frame["label"])
    proba = model.predict_proba(frame)
    # Differences +9, -9, +1, -1 in both orders: four pure buckets, so predictions are exact.
    np.testing.assert_allclose(proba, np.eye(3)[[0, 1, 2, 2]])
    smoothed = DifferenceBucketModel(n_buckets=4, smoothing=1.0).fit(frame, frame["label"])
    assert (smoothed.predict_proba(frame) > 0).all()  # no bucket predicts P = 0 for a class


def test_text_features_swap_is_a_column_permutation(toy):
    train, _ = toy
    ab, ba = text_features(train, relative=False)
    k = len(RESPONSE_FEATURES)
    np.testing.assert_array_equal(ab[:, :k], ba[:, k : 2 * k])
    np.testing.assert_array_equal(ab[:, 2 * k : 3 * k], -ba[:, 2 * k : 3 * k])
    swapped_ab, _ = text_features(swap_frame(train), relative=False)
    np.testing.assert_array_equal(swapped_ab, ba)
    rel_ab, rel_ba = text_features(train)  # differences, |differences|, overlap
    np.testing.assert_array_equal(rel_ab[:, :k], ab[:, 2 * k : 3 * k])
    np.testing.assert_array_equal(rel_ba[:, :k], -rel_ab[:, :k])
    np.testing.assert_array_equal(rel_ab[:, k:], rel_ba[:, k:])
    assert repeated_ngram_share("a b c a b c".split()) == pytest.approx(0.5)
    assert repeated_ngram_share("a b c d".split()) == 0.0


def test_inputs_are_checked(toy):
    train, _ = toy
    with pytest.raises(ValueError, match="response_b"):
        LengthModel().fit(train.drop(columns="response_b"), train["label"])
    with pytest.raises(ValueError, match="0 \\(A\\), 1 \\(B\\) or 2"):
        LengthModel().fit(train, train["label"] + 1)
    with pytest.raises(TypeError, match="DataFrame"):
        LengthModel().fit(train.to_numpy(), train["label"])


def test_temperature_recovers_a_known_softening():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 2
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in truth])
    overconfident = apply_temperature(truth, 0.5)  # logits doubled
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.0, rel=0.1)
    assert log_loss(y, apply_temperature(overconfident, t)) < log_loss(y, overconfident)


def test_threshold_multiplier_sharpens_underconfident_predictions():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    sharp = np.full((3000, 3), 0.05)
    sharp[np.arange(3000), y] = 0.9
    blurred = 0.6 * sharp + 0.4 / 3  # confident rows made too timid
    threshold, multiplier = fit_threshold_multiplier(blurred, y)
    assert multiplier > 1.0
    adjusted = apply_threshold_multiplier(blurred, threshold, multiplier)
    assert log_loss(y, adjusted) < log_loss(y, blurred)
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)


def test_calibrated_model_is_symmetric_and_not_worse_out_of_sample(toy):
    train, test = toy
    raw = make_model("features-gbdt", n_estimators=400, num_leaves=31, min_child_samples=5)
    calibrated = CalibratedPreferenceModel(estimator=raw, method="temperature").fit(
        train, train["label"]
    )
    proba = calibrated.predict_proba(test)
    np.testing.assert_allclose(
        calibrated.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]], atol=1e-9
    )
    raw_loss = log_loss(test["label"], clone(raw).fit(train, train["label"]).predict_proba(test))
    assert log_loss(test["label"], proba) <= raw_loss + 0.01
    assert calibrated.temperature_ > 1.0  # a deep, barely regularised GBDT is overconfident


def test_pool_weights_find_the_informative_member():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 2000)
    good = np.full((2000, 3), 0.1)
    good[np.arange(2000), y] = 0.8
    uniform = np.full((2000, 3), 1 / 3)
    weights = fit_pool_weights([uniform, good], y)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > 0.95


def test_ensemble_fits_weights_and_beats_its_worst_member(toy):
    train, test = toy
    members = [("length", LengthModel()), ("bucket", DifferenceBucketModel(n_buckets=20))]
    model = make_model("ensemble", members=members, weights="fitted", n_splits=3)
    model.fit(train, train["label"])
    assert model.weights_.shape == (2,) and model.weights_.sum() == pytest.approx(1.0)
    proba = model.predict_proba(test)
    np.testing.assert_allclose(
        model.predict_proba(swap_frame(test)), proba[:, [1, 0, 2]], atol=1e-9
    )
    worst = max(
        log_loss(test["label"], clone(m).fit(train, train["label"]).predict_proba(test))
        for _, m in members
    )
    assert log_loss(test["label"], proba) < worst


def test_evaluate_matches_sklearn_and_the_interval_covers_it(toy):
    train, test = toy
    proba = LengthModel().fit(train, train["label"]).predict_proba(test)
    scores = evaluate_proba(test["label"], proba)
    assert scores["log_loss"] == pytest.approx(log_loss(test["label"], proba))
    low, high = scores["log_loss_ci"]
    assert low < scores["log_loss"] < high
    assert scores["n"] == len(test)
    assert scores["accuracy"] == pytest.approx((proba.argmax(1) == test["label"]).mean())
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_proba(test["label"], proba * 2)


def test_reliability_of_calibrated_probabilities_is_near_diagonal():
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(3), size=20000)
    y = np.array([rng.choice(3, p=p) for p in proba])
    table = reliability_table(y, proba, n_bins=10)
    assert table["count"].sum() == 3 * 20000
    assert table["ece"].iloc[0] < 0.02
    assert reliability_table(y, apply_temperature(proba, 0.3))["ece"].iloc[0] > 0.05


def test_grouped_folds_never_split_a_prompt(toy):
    train, _ = toy
    groups = prompt_groups(train)
    for _, fit_rows, test_rows in grouped_folds(train, n_splits=5, seed=0):
        assert not set(groups[fit_rows]) & set(groups[test_rows])
    held = [name for name, _, _ in dataset_folds(train)]
    assert held == ["even", "odd"]


def test_cross_validate_reports_every_model_and_dataset(toy):
    train, _ = toy
    models = {"length": LengthModel(), "bucket": DifferenceBucketModel(n_buckets=20)}
    table, preds = cross_validate(models, train, scheme="leave-one-dataset-out")
    assert set(table["held_out"]) == {"all", "even", "odd"}
    assert len(table) == 6
    assert not np.isnan(preds["length"]).any()
    row = table[(table.model == "length") & (table.held_out == "all")].iloc[0]
    assert row["log_loss"] == pytest.approx(log_loss(train["label"], preds["length"]))
    assert row["train_pairs_per_s"] > 0


def test_saved_model_predicts_the_same(tmp_path, toy):
    train, test = toy
    model = CalibratedPreferenceModel(estimator=LengthModel()).fit(train, train["label"])
    save_model(model, "length", tmp_path / "m", meta={"n": len(train)})
    loaded, meta = load_model(tmp_path / "m")
    assert meta["model"] == "length" and meta["n"] == len(train)
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["length", "features-gbdt"])
def test_training_without_ties_warns_and_predicts_no_ties(toy, name):
    # Like @hh-rlhf, or a contributor who never votes tie: two classes, not three.
    train, test = toy
    no_ties = train[train["label"] != 2]
    with pytest.warns(UserWarning, match="no ties"):
        model = make_model(name).fit(no_ties, no_ties["label"])
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 3)
    assert (proba[:, 2] == 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    decided = test["label"] != 2
    assert (proba[decided].argmax(axis=1) == test["label"][decided]).mean() > 0.8
