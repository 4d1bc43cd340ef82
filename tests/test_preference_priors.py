"""Prior-shift adaptation: EM recovers known shares, symmetry is exact, no shift changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.preference import (
    DifferenceBucketModel,
    LengthModel,
    PriorAdapted,
    adjust_priors,
    bootstrap_priors,
    estimate_priors,
    swap_frame,
)
from crowdtune.preference.metrics import row_log_loss
from crowdtune.preference.priors import symmetric_shares

TRAIN = np.array([0.45, 0.45, 0.10])
#: Class-conditional normal densities of a 1-d score: A high, B low, ties in between.
MEANS, SDS = np.array([1.0, -1.0, 0.0]), np.array([1.0, 1.0, 0.5])


def bayes_posteriors(n: int, shares: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn with ``shares`` and the exactly calibrated posteriors under :data:`TRAIN`."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=shares)
    x = rng.normal(MEANS[y], SDS[y])
    posterior = np.exp(-0.5 * ((x[:, None] - MEANS) / SDS) ** 2) / SDS * TRAIN
    return y, posterior / posterior.sum(axis=1, keepdims=True)


def test_em_recovers_a_known_tie_share_and_lowers_log_loss():
    y, proba = bayes_posteriors(4000, np.array([0.3, 0.3, 0.4]), seed=0)
    shares = estimate_priors(proba, TRAIN)
    assert shares[0] == shares[1] and shares.sum() == pytest.approx(1)
    assert shares[2] == pytest.approx(0.4, abs=0.03)
    ci = bootstrap_priors(proba, TRAIN, n_bootstrap=100, seed=1)
    assert ci.shape == (3, 2) and (ci[:, 0] <= shares).all() and (shares <= ci[:, 1]).all()
    adapted = adjust_priors(proba, TRAIN, shares)
    assert row_log_loss(y, adapted).mean() < row_log_loss(y, proba).mean() - 0.02


def test_no_shift_leaves_shares_and_probabilities_nearly_unchanged():
    _, proba = bayes_posteriors(4000, TRAIN, seed=2)
    shares = estimate_priors(proba, TRAIN)
    np.testing.assert_allclose(shares, TRAIN, atol=0.03)
    assert np.abs(adjust_priors(proba, TRAIN, shares) - proba).max() < 0.05
    np.testing.assert_allclose(adjust_priors(proba, TRAIN, TRAIN), proba, atol=1e-12)


def test_estimate_is_symmetric_and_training_priors_are_symmetrised():
    _, proba = bayes_posteriors(500, np.array([0.5, 0.2, 0.3]), seed=3)
    swapped = proba[:, [1, 0, 2]]
    np.testing.assert_array_equal(estimate_priors(swapped, TRAIN), estimate_priors(proba, TRAIN))
    # An A/B split in the training priors is averaged away: the model saw both orders.
    np.testing.assert_array_equal(
        estimate_priors(proba, [0.6, 0.3, 0.1]), estimate_priors(proba, TRAIN)
    )
    np.testing.assert_array_equal(symmetric_shares(np.array([0, 0, 1, 2])), [0.375, 0.375, 0.25])


def test_nothing_to_adapt_without_training_ties_and_bad_inputs_are_named():
    _, proba = bayes_posteriors(50, TRAIN, seed=4)
    np.testing.assert_array_equal(estimate_priors(proba, [0.5, 0.5, 0.0]), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="train_priors"):
        estimate_priors(proba, [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="no probability left"):
        adjust_priors(np.array([[0.0, 0.0, 1.0]]), TRAIN, [0.5, 0.5, 0.0])


def length_pairs(n: int, tie_share: float, seed: int) -> pd.DataFrame:
    """Pairs whose length difference depends on the label only (a pure prior shift between
    frames): A longer, B longer, or a tie with near-equal lengths."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[(1 - tie_share) / 2, (1 - tie_share) / 2, tie_share])
    diff = np.rint(rng.normal(np.array([12.0, -12.0, 0.0])[y], np.array([8.0, 8.0, 3.0])[y]))
    base = rng.integers(20, 60, size=n)
    la, lb = base + np.maximum(diff, 0), base + np.maximum(-diff, 0)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "response_a": ["w " * int(k) for k in la],
            "response_b": ["w " * int(k) for k in lb],
            "label": y,
        }
    )


@pytest.fixture(scope="module")
def shifted() -> tuple[PriorAdapted, pd.DataFrame]:
    train = length_pairs(3000, 0.10, seed=5)
    model = PriorAdapted(DifferenceBucketModel(n_buckets=30), n_bootstrap=50)
    return model.fit(train, train["label"].to_numpy()), length_pairs(1500, 0.40, seed=6)


def test_wrapper_adapts_to_a_shifted_tie_rate(shifted):
    model, test = shifted
    y = test["label"].to_numpy()
    adapted = model.predict_proba(test)
    assert model.train_priors_[2] == pytest.approx(0.10, abs=0.02)
    assert model.priors_[2] == pytest.approx(0.40, abs=0.06)
    low, high = model.priors_ci_[2]
    assert low < model.priors_[2] < high
    raw = model.estimator_.predict_proba(test)
    assert row_log_loss(y, adapted).mean() < row_log_loss(y, raw).mean() - 0.02
    summary = model.priors_summary()
    assert set(summary) == {"train", "estimated", "ci"} and set(summary["ci"]) == {"a", "b", "tie"}


def test_wrapper_swaps_columns_exactly_when_inputs_are_swapped(shifted):
    model, test = shifted
    proba = model.predict_proba(test)
    priors = model.priors_.copy()
    swapped = model.predict_proba(swap_frame(test))
    np.testing.assert_array_equal(swapped, proba[:, [1, 0, 2]])
    np.testing.assert_array_equal(model.priors_, priors)


def test_wrapper_follows_the_estimator_contract():
    model = PriorAdapted(LengthModel(C=0.5), n_bootstrap=10)
    copy = clone(model)
    assert copy.get_params()["estimator__C"] == 0.5 and copy.get_params()["n_bootstrap"] == 10
    with pytest.raises(NotFittedError):
        copy.predict_proba(length_pairs(5, 0.1, seed=7))


def test_cli_adapt_priors_reports_shares_with_an_interval(tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    fit = runner.invoke(app, ["preference", "fit", "--data", "@pandalm", "--model", "length",
                              "--out", str(model_dir), "--json"])  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit.stdout)["train_priors"][2] == pytest.approx(0.105, abs=0.001)
    evaluate = runner.invoke(app, ["preference", "evaluate", "--model-dir", str(model_dir),
                                   "--data", "@car:test", "--adapt-priors", "--json"])  # fmt: skip
    assert evaluate.exit_code == 0, evaluate.output
    scores = json.loads(evaluate.stdout)
    priors = scores["priors"]
    assert set(priors) == {"train", "estimated", "ci", "observed"}
    low, high = priors["ci"]["tie"]
    assert low <= priors["estimated"]["tie"] <= high
    assert priors["estimated"]["a"] == priors["estimated"]["b"]
    assert scores["n"] == scores["unadapted"]["n"] == 254
    out = tmp_path / "preds.csv"
    predict = runner.invoke(app, ["preference", "predict", "--model-dir", str(model_dir),
                                  "--data", "@car:test", "--adapt-priors", "--out", str(out),
                                  "--json"])  # fmt: skip
    assert predict.exit_code == 0, predict.output
    assert json.loads(predict.stdout)["priors"]["estimated"] == priors["estimated"]
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].sum(axis=1), 1.0)
    (model_dir / "meta.json").write_text(json.dumps({"model": "length"}))
    stale = runner.invoke(app, ["preference", "evaluate", "--model-dir", str(model_dir),
                                "--data", "@car:test", "--adapt-priors"])  # fmt: skip
    assert stale.exit_code == 2 and "train_priors" in stale.output
