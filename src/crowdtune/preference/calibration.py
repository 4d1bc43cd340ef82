"""Calibration fitted on out-of-fold predictions: temperature scaling, threshold multiplier.

A model's in-sample probabilities are overconfident, so a calibrator is always fitted on
predictions for rows the model did not train on (:func:`out_of_fold_proba`, folds grouped by
prompt). Both calibrators commute with swapping A and B, so a symmetric model stays symmetric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted

from crowdtune.preference.base import check_frame, check_labels, weighted_rows
from crowdtune.preference.metrics import EPS, row_log_loss
from crowdtune.validation import check_choice


def prompt_groups(X: pd.DataFrame) -> np.ndarray:
    """Group ids by prompt (case and whitespace folded): rows with one prompt share a fold."""
    key = X["prompt"].astype(str).str.lower().str.split().str.join(" ")
    return pd.factorize(key)[0]


def out_of_fold_proba(
    estimator: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Predictions for every row from a clone of ``estimator`` fitted on the other folds.

    Folds are grouped (by prompt unless ``groups`` is given), so no prompt is on both sides.
    ``sample_weight`` (float[n], optional) goes to every fold's fit (:func:`fit_weighted`).
    """
    proba = np.zeros((len(X), 3))
    fold = fold_index(X, groups, n_splits, seed)
    for k in np.unique(fold):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        weights = None if sample_weight is None else sample_weight[train]
        model = fit_weighted(clone(estimator), X.iloc[train], y[train], weights)
        proba[test] = model.predict_proba(X.iloc[test])
    return proba


def fold_index(
    X: pd.DataFrame, groups: np.ndarray | None = None, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """The fold of every row in :func:`out_of_fold_proba` (int[n]): grouped k-fold, by prompt
    unless ``groups`` is given, ``min(n_splits, number of groups)`` folds."""
    groups = prompt_groups(X) if groups is None else np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"out-of-fold predictions need at least 2 groups, got {n_groups}")
    folds = GroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    fold = np.empty(len(X), dtype=np.int64)
    for k, (_, test) in enumerate(folds.split(X, groups=groups)):
        fold[test] = k
    return fold


def fit_weighted(estimator: Any, X: pd.DataFrame, y: np.ndarray, sample_weight: Any) -> Any:
    """``estimator.fit(X, y)``, with ``sample_weight=`` only when there are weights, so that
    a predictor without weighted fitting (one of a user's own) still fits unweighted data."""
    if sample_weight is None:
        return estimator.fit(X, y)
    return estimator.fit(X, y, sample_weight=sample_weight)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: T > 1 softens, T < 1 sharpens."""
    return softmax(np.log(np.clip(proba, EPS, 1.0)) / temperature, axis=1)


def fit_temperature(
    proba: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """The temperature minimising the (``sample_weight``-weighted) log loss of ``proba`` on
    labels ``y`` (searched on log T)."""
    result = minimize_scalar(
        lambda log_t: np.average(
            row_log_loss(y, apply_temperature(proba, np.exp(log_t))), weights=sample_weight
        ),
        bounds=(-3.0, 3.0),
        method="bounded",
    )
    return float(np.exp(result.x))


def apply_threshold_multiplier(
    proba: np.ndarray, threshold: float, multiplier: float
) -> np.ndarray:
    """Multiply the top class's probability by ``multiplier`` where it exceeds ``threshold``.

    The post-processing shared in the Chatbot Arena competition's public notebooks (as we read
    them): confident rows are made more confident, then rows are renormalised.
    """
    p = proba.copy()
    top = p.argmax(axis=1)
    rows = np.flatnonzero(p[np.arange(len(p)), top] > threshold)
    p[rows, top[rows]] *= multiplier
    return p / p.sum(axis=1, keepdims=True)


def fit_threshold_multiplier(
    proba: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[float, float]:
    """Grid search of (threshold, multiplier) minimising the (``sample_weight``-weighted) log
    loss; (1, 1) means no change."""

    def loss_of(p: np.ndarray) -> float:
        return float(np.average(row_log_loss(y, p), weights=sample_weight))

    best = (1.0, 1.0, loss_of(proba))
    for threshold in np.arange(0.40, 0.96, 0.05):
        for multiplier in np.arange(0.70, 1.81, 0.05):
            loss = loss_of(apply_threshold_multiplier(proba, threshold, multiplier))
            if loss < best[2] - 1e-12:
                best = (float(threshold), float(multiplier), loss)
    return best[0], best[1]


#: Calibration methods: none, temperature scaling, the competition's threshold multiplier.
CALIBRATIONS = ("none", "temperature", "threshold-multiplier")


class CalibratedPreferenceModel(ClassifierMixin, BaseEstimator):
    """A predictor followed by a calibrator fitted on its out-of-fold predictions.

    Parameters
    ----------
    estimator
        Any predictor of this package.
    method
        One of :data:`CALIBRATIONS`.
    n_splits, random_state
        Grouped folds for the out-of-fold predictions.
    """

    def __init__(
        self,
        *,
        estimator: Any,
        method: str = "temperature",
        n_splits: int = 5,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.n_splits = n_splits
        self.random_state = random_state

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        groups: np.ndarray | None = None,
        sample_weight: Any = None,
    ) -> CalibratedPreferenceModel:
        """Fit the calibrator on out-of-fold predictions, then the wrapped model on every row;
        ``sample_weight`` (float[n], optional) weighs the rows of both fits."""
        check_choice(self.method, CALIBRATIONS, "calibration")
        X = check_frame(X)
        X, labels, weights, groups = weighted_rows(
            X, check_labels(y, len(X)), sample_weight, groups
        )
        self.temperature_, self.threshold_, self.multiplier_ = 1.0, 1.0, 1.0
        if self.method != "none":
            oof = out_of_fold_proba(
                self.estimator, X, labels, groups, self.n_splits, self.random_state, weights
            )
            self.oof_proba_ = oof
            if self.method == "temperature":
                self.temperature_ = fit_temperature(oof, labels, weights)
            else:
                self.threshold_, self.multiplier_ = fit_threshold_multiplier(oof, labels, weights)
        self.estimator_ = fit_weighted(clone(self.estimator), X, labels, weights)
        self.classes_ = np.arange(3)
        return self

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """Apply the fitted calibrator to raw probabilities of the wrapped model."""
        check_is_fitted(self)
        if self.method == "temperature":
            return apply_temperature(proba, self.temperature_)
        if self.method == "threshold-multiplier":
            return apply_threshold_multiplier(proba, self.threshold_, self.multiplier_)
        return proba

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row: the wrapped model's, calibrated."""
        check_is_fitted(self)
        return self.calibrate(self.estimator_.predict_proba(check_frame(X)))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)
