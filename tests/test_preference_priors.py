"""Prior-shift adaptation: MAP-EM recovers known shares with discriminative posteriors, stays
near the training share with flat ones, symmetry is exact, no shift changes nothing."""

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
from crowdtune.preference.priors import KAPPA, symmetric_shares

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


#: A weak prior (a hundredth of a pseudo-row per target row), for the pure prior shifts below.
WEAK = 0.01


def test_em_recovers_a_known_tie_share_and_lowers_log_loss():
    y, proba = bayes_posteriors(4000, np.array([0.3, 0.3, 0.4]), seed=0)
    shares = estimate_priors(proba, TRAIN, kappa=WEAK)
    assert shares[0] == shares[1] and shares.sum() == pytest.approx(1)
    assert shares[2] == pytest.approx(0.4, abs=0.03)
    # kappa = 0 is plain maximum likelihood; the prior only pulls towards the training share.
    plain = estimate_priors(proba, TRAIN, kappa=0)[2]
    assert TRAIN[2] < shares[2] < plain == pytest.approx(0.4, abs=0.03)
    ci = bootstrap_priors(proba, TRAIN, n_bootstrap=100, seed=1, kappa=WEAK)
    assert ci.shape == (3, 2) and (ci[:, 0] <= shares).all() and (shares <= ci[:, 1]).all()
    adapted = adjust_priors(proba, TRAIN, shares)
    assert row_log_loss(y, adapted).mean() < row_log_loss(y, proba).mean() - 0.02


def test_the_estimate_moves_from_the_training_share_by_the_prior_strength():
    """MAP-EM's fixed point: monotone in kappa, and about D / (D + kappa) of the way from the
    training share to the maximum-likelihood share, where D = E[P(tie) | tie] - E[P(tie) | not]
    says how well the posteriors separate ties (the module docstring's linearisation)."""
    y, proba = bayes_posteriors(4000, np.array([0.3, 0.3, 0.4]), seed=0)
    ties = [estimate_priors(proba, TRAIN, kappa=k)[2] for k in (0, 0.3, 1, 3, KAPPA)]
    assert ties == sorted(ties, reverse=True) and ties[-1] > TRAIN[2]
    separation = proba[y == 2, 2].mean() - proba[y != 2, 2].mean()
    assert 0.05 < separation < 0.2
    for kappa, tie in zip((3, KAPPA), ties[3:], strict=True):
        fraction = separation / (separation + kappa)
        assert tie - TRAIN[2] == pytest.approx(fraction * (ties[0] - TRAIN[2]), rel=0.2)


@pytest.mark.parametrize("p_tie", [0.05, 0.2])
def test_flat_tie_posteriors_no_longer_run_to_the_boundary(p_tie):
    """The failure that made adaptation triple the log loss: P(tie) the same on every row and
    its mean off the training share. Plain ML runs to 0 or 1; the prior keeps the estimate
    between the training share and the mean P(tie), about 1 / kappa of the way."""
    rng = np.random.default_rng(8)
    split = rng.uniform(0.2, 0.8, size=3000)
    proba = np.column_stack([(1 - p_tie) * split, (1 - p_tie) * (1 - split), np.full(3000, p_tie)])
    plain = estimate_priors(proba, TRAIN, kappa=0)[2]
    assert plain == pytest.approx(0.0 if p_tie < TRAIN[2] else 1.0, abs=1e-6)
    tie = estimate_priors(proba, TRAIN)[2]
    low, high = sorted([TRAIN[2], p_tie])
    assert low < tie < high
    assert abs(tie - TRAIN[2]) == pytest.approx(abs(p_tie - TRAIN[2]) / KAPPA, rel=0.2)
    ci = bootstrap_priors(proba, TRAIN, n_bootstrap=50, seed=0)
    assert low < ci[2, 0] <= tie <= ci[2, 1] < high
    # Shifting to it changes no row by more than a few thousandths.
    adjusted = adjust_priors(proba, TRAIN, [(1 - tie) / 2, (1 - tie) / 2, tie])
    assert np.abs(adjusted - proba).max() < 0.02


def test_kappa_must_be_finite_and_non_negative():
    _, proba = bayes_posteriors(50, TRAIN, seed=4)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="kappa"):
            estimate_priors(proba, TRAIN, kappa=bad)
    with pytest.raises(ValueError, match="kappa"):
        PriorAdapted.from_fitted(None, TRAIN, kappa=-1).adapt(proba)


def test_no_shift_leaves_shares_and_probabilities_nearly_unchanged():
    _, proba = bayes_posteriors(4000, TRAIN, seed=2)
    shares = estimate_priors(proba, TRAIN, kappa=WEAK)
    np.testing.assert_allclose(shares, TRAIN, atol=0.03)
    assert np.abs(adjust_priors(proba, TRAIN, shares) - proba).max() < 0.05
    np.testing.assert_allclose(adjust_priors(proba, TRAIN, TRAIN), proba, atol=1e-12)


def test_estimate_is_symmetric_and_training_priors_are_symmetrised():
    _, proba = bayes_posteriors(500, np.array([0.5, 0.2, 0.3]), seed=3)
    swapped = proba[:, [1, 0, 2]]
    for kappa in (0, WEAK, KAPPA):
        np.testing.assert_array_equal(
            estimate_priors(swapped, TRAIN, kappa=kappa), estimate_priors(proba, TRAIN, kappa=kappa)
        )
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
    model = PriorAdapted(DifferenceBucketModel(n_buckets=30), kappa=WEAK, n_bootstrap=50)
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
    assert set(summary) == {"train", "estimated", "ci", "kappa"} and summary["kappa"] == WEAK
    assert set(summary["ci"]) == {"a", "b", "tie"}


def test_wrapper_swaps_columns_exactly_when_inputs_are_swapped(shifted):
    model, test = shifted
    proba = model.predict_proba(test)
    priors = model.priors_.copy()
    swapped = model.predict_proba(swap_frame(test))
    np.testing.assert_array_equal(swapped, proba[:, [1, 0, 2]])
    np.testing.assert_array_equal(model.priors_, priors)


def test_wrapper_follows_the_estimator_contract():
    model = PriorAdapted(LengthModel(C=0.5), kappa=2.0, n_bootstrap=10)
    copy = clone(model)
    assert copy.get_params()["estimator__C"] == 0.5 and copy.get_params()["n_bootstrap"] == 10
    assert copy.get_params()["kappa"] == 2.0 and PriorAdapted(None).kappa == KAPPA
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
    assert set(priors) == {"train", "estimated", "ci", "kappa", "observed"}
    low, high = priors["ci"]["tie"]
    assert low <= priors["estimated"]["tie"] <= high
    assert priors["estimated"]["a"] == priors["estimated"]["b"] and priors["kappa"] == KAPPA
    assert scores["n"] == scores["unadapted"]["n"] == 254
    # The default prior keeps adaptation within noise of the raw scores on this target.
    assert abs(scores["log_loss"] - scores["unadapted"]["log_loss"]) < 0.01
    weak = runner.invoke(app, ["preference", "evaluate", "--model-dir", str(model_dir),
                               "--data", "@car:test", "--adapt-priors", "--prior-strength", "0",
                               "--json"])  # fmt: skip
    assert weak.exit_code == 0, weak.output
    plain = json.loads(weak.stdout)["priors"]
    assert plain["kappa"] == 0
    # The prior only pulls towards the training share: plain EM moves at least as far.
    moved = abs(priors["estimated"]["tie"] - priors["train"]["tie"])
    assert abs(plain["estimated"]["tie"] - plain["train"]["tie"]) >= moved
    out = tmp_path / "preds.csv"
    predict = runner.invoke(app, ["preference", "predict", "--model-dir", str(model_dir),
                                  "--data", "@car:test", "--adapt-priors", "--out", str(out),
                                  "--json"])  # fmt: skip
    assert predict.exit_code == 0, predict.output
    assert json.loads(predict.stdout)["priors"]["estimated"] == priors["estimated"]
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].sum(axis=1), 1.0)
    refusals = (("--prior-strength=-1", "greater than"), ("--prior-strength=inf", "kappa"))
    for bad, message in refusals:
        refused = runner.invoke(app, ["preference", "predict", "--model-dir", str(model_dir),
                                      "--data", "@car:test", "--adapt-priors", bad,
                                      "--out", str(out)])  # fmt: skip
        assert refused.exit_code == 2 and message in refused.output, refused.output
    without = runner.invoke(app, ["preference", "predict", "--model-dir", str(model_dir),
                                  "--data", "@car:test", "--prior-strength", "1",
                                  "--out", str(out)])  # fmt: skip
    assert without.exit_code == 2 and "--adapt-priors" in without.output
    help_text = runner.invoke(app, ["preference", "evaluate", "--help"], env={"COLUMNS": "400"})
    assert "--prior-strength" in help_text.output and f"KAPPA = {KAPPA:g}," in help_text.output
    (model_dir / "meta.json").write_text(json.dumps({"model": "length"}))
    stale = runner.invoke(app, ["preference", "evaluate", "--model-dir", str(model_dir),
                                "--data", "@car:test", "--adapt-priors"])  # fmt: skip
    assert stale.exit_code == 2 and "train_priors" in stale.output
