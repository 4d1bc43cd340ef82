"""The ensemble: the default (equal weights of length, tie-aware and features-gbdt) and the
``select`` rule that keeps it from losing to its best member on datasets it never saw."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.datasets.comparisons import write_arena_csv
from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import (
    DEFAULT_MODEL,
    EnsembleModel,
    LengthModel,
    make_model,
    swap_frame,
)
from crowdtune.preference.ensemble import DEFAULT_MEMBERS, select_weights
from crowdtune.preference.metrics import row_log_loss
from test_preference_models import toy_frame


def four_datasets(n: int = 480) -> pd.DataFrame:
    """:func:`toy_frame` (the longer answer wins, near-equal lengths tie) from four datasets."""
    frame = toy_frame(n, seed=3)
    frame["source"] = [f"set{i % 4}" for i in range(n)]
    return frame


def test_the_default_is_an_equal_pool_of_length_tie_aware_and_features_gbdt():
    frame = four_datasets()
    model = make_model(DEFAULT_MODEL)
    assert DEFAULT_MODEL == "ensemble" and isinstance(model, EnsembleModel)
    assert model.weights == "equal" and model.calibrate is False
    model.fit(frame, frame["label"])
    assert model.names_ == list(DEFAULT_MEMBERS) == ["length", "tie-aware", "features-gbdt"]
    np.testing.assert_allclose(model.weights_, [1 / 3] * 3)
    assert model.choice_ == "equal" and model.temperature_ == 1.0
    proba = model.predict_proba(frame)
    members = np.mean([m.predict_proba(frame) for m in model.estimators_], axis=0)
    np.testing.assert_allclose(proba, members, atol=1e-12)
    np.testing.assert_allclose(
        model.predict_proba(swap_frame(frame)), proba[:, [1, 0, 2]], atol=1e-9
    )


def test_select_weights_scores_the_fitted_pool_on_folds_its_weights_did_not_see():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    good = np.full((600, 3), 0.2)
    good[np.arange(600), y] = 0.6
    noise = rng.dirichlet(np.ones(3), 600)
    fold = np.arange(600) % 3
    choice, weights, scores = select_weights([good, noise], y, fold)
    # The informative member alone beats any pool with noise in it.
    assert choice == "member0" and weights.tolist() == [1.0, 0.0]
    assert scores["member0"] == pytest.approx(row_log_loss(y, good).mean())
    assert scores["member0"] < min(scores["equal"], scores["fitted"], scores["member1"])
    # Two equally good members whose errors are independent: a pool beats each alone.
    guesses = []
    for _ in range(2):
        guess = np.full((600, 3), 0.2)
        guess[np.arange(600), np.where(rng.random(600) < 0.6, y, (y + 1) % 3)] = 0.6
        guesses.append(guess)
    choice, weights, _ = select_weights(guesses, y, fold)
    assert choice in ("equal", "fitted") and weights.min() > 0.2


class ConfidentGuess(ClassifierMixin, BaseEstimator):
    """A member that learns nothing and says "A" with probability 0.9, whatever the data."""

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: object = None) -> ConfidentGuess:
        self.classes_ = np.arange(3)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile([0.9, 0.05, 0.05], (len(X), 1))


def test_select_never_loses_to_its_best_member_on_a_held_out_dataset():
    """A confidently wrong member drags the equal pool far below the length rule on a held-out
    dataset; ``select`` sees that on the dataset-grouped out-of-fold predictions of the training
    datasets and keeps the best member alone."""
    frame = four_datasets()
    members = [("length", LengthModel()), ("guess", ConfidentGuess())]
    y = frame["label"].to_numpy()
    held = frame["source"].to_numpy() == "set3"
    train, test = frame[~held], frame[held]

    def held_out_loss(model) -> float:
        return row_log_loss(y[held], clone(model).fit(train, y[~held]).predict_proba(test)).mean()

    best_member = min(held_out_loss(m) for _, m in members)
    select = EnsembleModel(members=members, weights="select", n_splits=3)
    equal = EnsembleModel(members=members, weights="equal")
    assert held_out_loss(equal) > best_member + 0.05  # the rule matters here
    assert held_out_loss(select) <= best_member + 1e-9
    fitted = clone(select).fit(train, y[~held])
    assert fitted.fold_groups_ == "dataset" and fitted.choice_ == "length"
    assert fitted.oof_scores_["length"] == min(fitted.oof_scores_.values())
    assert set(fitted.oof_scores_) == {"length", "guess", "equal", "fitted"}
    # A member with weight 0 is not run at prediction time.
    assert fitted.weights_.tolist() == [1.0, 0.0]


def test_ensemble_parameters_round_trip_through_clone():
    model = EnsembleModel(
        members=[("length", LengthModel(C=0.5))], weights="select", n_splits=2, calibrate=True
    )
    copy = clone(model)
    params = copy.get_params(deep=False)
    assert {k: v for k, v in params.items() if k != "members"} == {
        "weights": "select",
        "n_splits": 2,
        "random_state": 0,
        "fold_groups": "dataset",
        "calibrate": True,
    }
    assert copy.get_params()["members"][0][1].C == 0.5
    with pytest.raises(ValueError, match="ensemble weighting"):
        EnsembleModel(weights="best").fit(four_datasets(), four_datasets()["label"])


def test_preference_fit_without_model_fits_the_default(tmp_path):
    model_dir, preds, train = tmp_path / "model", tmp_path / "preds.csv", tmp_path / "train.csv"
    # 400 of PandaLM's comparisons keep the test fast (the default fits three models).
    write_arena_csv(load_comparisons("@pandalm")[:400], train)
    runner = CliRunner()
    fit = runner.invoke(app, ["preference", "fit", "--data", str(train), "--out", str(model_dir),
                              "--json"])  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit.stdout)["model"] == DEFAULT_MODEL
    assert json.loads((model_dir / "meta.json").read_text())["model"] == DEFAULT_MODEL
    predict = runner.invoke(app, ["preference", "predict", "--model-dir", str(model_dir),
                                  "--data", "@car:test", "--out", str(preds)])  # fmt: skip
    assert predict.exit_code == 0, predict.output
    table = pd.read_csv(preds)
    assert len(table) == 254
    np.testing.assert_allclose(table.iloc[:, 1:].sum(axis=1), 1.0)
    evaluate = runner.invoke(app, ["preference", "evaluate", "--model-dir", str(model_dir),
                                   "--data", "@car:test", "--json"])  # fmt: skip
    assert evaluate.exit_code == 0, evaluate.output
    # Expert rewrites are longer and better: the default trained on PandaLM transfers to them.
    assert json.loads(evaluate.stdout)["accuracy"] > 0.6


def test_select_and_fitted_take_sample_weights():
    """A row of weight 0 is a row not given, in the out-of-fold fits and the weighting too."""
    frame = four_datasets()
    y = frame["label"].to_numpy()
    weights = np.where(np.arange(len(frame)) % 5 == 0, 0.0, 1.0)
    members = [("length", LengthModel()), ("guess", ConfidentGuess())]
    for weighting in ("select", "fitted"):
        model = EnsembleModel(members=members, weights=weighting, n_splits=3)
        weighted = clone(model).fit(frame, y, sample_weight=weights)
        kept = clone(model).fit(frame[weights > 0], y[weights > 0])
        np.testing.assert_allclose(weighted.weights_, kept.weights_, atol=1e-6)
        # The toy rule is nearly separable and lbfgs stops within its tolerance: LengthModel
        # alone fitted with weights of 1 and without weights differs by up to 7e-4 here.
        np.testing.assert_allclose(
            weighted.predict_proba(frame), kept.predict_proba(frame), atol=2e-3
        )
