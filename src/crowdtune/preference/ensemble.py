"""A weighted average of predictors, weights fitted on out-of-fold predictions, then calibrated."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from crowdtune.preference.base import check_frame, check_labels, seeded, weighted_rows
from crowdtune.preference.calibration import (
    apply_temperature,
    fit_temperature,
    fit_weighted,
    out_of_fold_proba,
)
from crowdtune.preference.cv import dataset_of
from crowdtune.preference.metrics import EPS
from crowdtune.preference.models import CPU_PREDICTORS
from crowdtune.validation import check_choice


def fit_pool_weights(
    probas: list[np.ndarray], y: np.ndarray, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Simplex weights ``w`` minimising the log loss of ``sum_k w_k p_k`` (a linear opinion pool),
    its rows weighted by ``sample_weight`` (default: equally).

    Parametrised as ``w = softmax(theta)`` and minimised with L-BFGS; the gradient is analytic.
    """
    stacked = np.stack([p[np.arange(len(y)), y] for p in probas], axis=1)  # (n, k): p_k(true)
    rows = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    rows = rows / rows.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = softmax(theta)
        mix = np.clip(stacked @ w, EPS, None)
        grad_w = -(rows / mix) @ stacked
        # Chain rule through the softmax: d w_j / d theta_i = w_j (delta_ij - w_i).
        return float(-(rows @ np.log(mix))), w * (grad_w - grad_w @ w)

    result = minimize(loss, np.zeros(len(probas)), jac=True, method="L-BFGS-B")
    return softmax(result.x)


def default_members(random_state: int = 0) -> list[tuple[str, Any]]:
    """The ensemble's default members: every CPU predictor of
    :data:`~crowdtune.preference.models.CPU_PREDICTORS`, by name, seeded with ``random_state``."""
    return [(name, seeded(cls, random_state)) for name, cls in CPU_PREDICTORS.items()]


class EnsembleModel(ClassifierMixin, BaseEstimator):
    """Members averaged with weights fitted on grouped out-of-fold predictions.

    Parameters
    ----------
    members
        ``[(name, estimator), ...]``; ``None`` means the CPU models of :func:`default_members`.
    n_splits, random_state
        Folds for the out-of-fold predictions; ``random_state`` also seeds the default members.
    fold_groups
        ``"dataset"`` (default): when the training rows come from two or more datasets (the
        ``source`` column, see :func:`~crowdtune.preference.cv.dataset_of`), each member is
        predicted on each dataset by a fit on the others, so weights and temperature reward what
        transfers to data a model never saw; with one dataset, folds are grouped by prompt.
        ``"prompt"``: always folds grouped by prompt (best in-distribution).
    calibrate
        Fit a temperature on the pooled out-of-fold predictions.
    """

    def __init__(
        self,
        *,
        members: list[tuple[str, Any]] | None = None,
        n_splits: int = 5,
        random_state: int = 0,
        fold_groups: str = "dataset",
        calibrate: bool = True,
    ) -> None:
        self.members = members
        self.n_splits = n_splits
        self.random_state = random_state
        self.fold_groups = fold_groups
        self.calibrate = calibrate

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        groups: np.ndarray | None = None,
        sample_weight: Any = None,
    ) -> EnsembleModel:
        """Fit the weights and temperature on out-of-fold predictions, then every member on
        every row; ``sample_weight`` (float[n], optional) weighs the rows of all these fits."""
        check_choice(self.fold_groups, ("dataset", "prompt"), "fold grouping")
        X = check_frame(X)
        X, labels, weights, groups = weighted_rows(
            X, check_labels(y, len(X)), sample_weight, groups
        )
        self.fold_groups_ = "prompt" if groups is None else "given"
        if groups is None and self.fold_groups == "dataset" and "source" in X.columns:
            datasets = dataset_of(X)
            if datasets.nunique() > 1:
                groups, self.fold_groups_ = pd.factorize(datasets)[0], "dataset"
        members = self.members if self.members is not None else default_members(self.random_state)
        self.names_ = [name for name, _ in members]
        oof = [
            out_of_fold_proba(est, X, labels, groups, self.n_splits, self.random_state, weights)
            for _, est in members
        ]
        self.weights_ = fit_pool_weights(oof, labels, weights)
        pooled = sum(w * p for w, p in zip(self.weights_, oof, strict=True))
        self.oof_proba_ = np.asarray(pooled)
        self.temperature_ = (
            fit_temperature(self.oof_proba_, labels, weights) if self.calibrate else 1.0
        )
        self.estimators_ = [fit_weighted(clone(est), X, labels, weights) for _, est in members]
        self.classes_ = np.arange(3)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row: the members' weighted average, temperature-scaled."""
        check_is_fitted(self)
        X = check_frame(X)
        pooled = sum(
            w * m.predict_proba(X) for w, m in zip(self.weights_, self.estimators_, strict=True)
        )
        return apply_temperature(np.asarray(pooled), self.temperature_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)
