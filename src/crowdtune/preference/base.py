"""The predictor contract: scikit-learn estimators over comparison frames, symmetric in A and B.

``X`` is a :func:`crowdtune.records.comparisons_frame` (at least the columns ``prompt``,
``response_a`` and ``response_b``), ``y`` the labels in ``[A, B, TIE]`` = ``[0, 1, 2]``. Every
predictor is trained on both orders of each pair and averages its predictions over both orders, so
``predict_proba(swap_frame(X))`` equals ``predict_proba(X)[:, [1, 0, 2]]``: which response is
shown first cannot matter.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from crowdtune.records import LABELS

#: Columns every predictor needs.
TEXT_COLUMNS = ("prompt", "response_a", "response_b")

#: Column permutation that maps probabilities of the swapped pair back: A<->B, tie stays.
SWAP_CLASSES = [1, 0, 2]


def check_frame(X: Any) -> pd.DataFrame:
    """``X`` as a DataFrame with the text columns, or a ``ValueError`` naming what is missing."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            "preference predictors take a DataFrame with columns prompt, response_a, response_b "
            f"(see crowdtune.records.comparisons_frame), got {type(X).__name__}"
        )
    missing = [c for c in TEXT_COLUMNS if c not in X.columns]
    if missing:
        raise ValueError(f"comparison frame lacks column(s) {missing}; it has {list(X.columns)}")
    return X


def check_labels(y: Any, n: int) -> np.ndarray:
    """``y`` as int labels in {0, 1, 2} of length ``n``, or a ``ValueError``."""
    labels = np.asarray(y)
    if labels.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {labels.shape}")
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or not np.isin(labels, (0, 1, 2)).all()
    ):
        raise ValueError(f"labels must be 0 (A), 1 (B) or 2 (TIE); got {np.unique(labels)[:5]}")
    return labels.astype(np.int64)


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """``sample_weight`` as float[n] (None stays None: every row weighs 1), or a ``ValueError``:
    a weight is a finite number >= 0, and some weight is positive. A weight means what a
    repeated row means (weight 2 = the row twice), as in scikit-learn."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=float)
    if weights.shape != (n,):
        raise ValueError(f"expected {n} sample weights, got shape {weights.shape}")
    if weights.size and not (np.isfinite(weights).all() and (weights >= 0).all()):
        bad = int(np.flatnonzero(~np.isfinite(weights) | (weights < 0))[0])
        raise ValueError(f"sample weights must be finite and >= 0; row {bad} has {weights[bad]}")
    if weights.size and not weights.sum() > 0:
        raise ValueError("every sample weight is 0: nothing to learn from")
    return weights


def weighted_rows(
    X: pd.DataFrame, labels: np.ndarray, sample_weight: Any, groups: Any = None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(X, labels, weights, groups)`` with the weights checked (:func:`check_sample_weight`)
    and the rows of weight 0 left out: they teach nothing, and leaving them out makes a
    weight-0 row exactly a row not given (folds, quantiles and scalers never see it)."""
    weights = check_sample_weight(sample_weight, len(X))
    groups = None if groups is None else np.asarray(groups)
    if weights is None or (weights > 0).all():
        return X, labels, weights, groups
    keep = weights > 0
    return X[keep], labels[keep], weights[keep], None if groups is None else groups[keep]


def swap_frame(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with the two responses (and models, where present) exchanged."""
    swapped = X.copy()
    for left, right in (("response_a", "response_b"), ("model_a", "model_b")):
        if left in X.columns and right in X.columns:
            swapped[left], swapped[right] = X[right].to_numpy(), X[left].to_numpy()
    return swapped


def swap_labels(y: np.ndarray) -> np.ndarray:
    """Labels after exchanging the responses: A<->B, a tie stays a tie."""
    return np.asarray(SWAP_CLASSES)[y]


def expand_proba(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities over ``classes`` (a model's ``classes_``) as float[n, 3] in [A, B, TIE] order;
    a class the model never saw gets probability 0."""
    out = np.zeros((len(proba), len(LABELS)))
    out[:, np.asarray(classes, dtype=int)] = proba
    return out


def seeded(estimator_class: type[BaseEstimator], seed: int, **params: Any) -> Any:
    """``estimator_class(**params)`` with ``random_state=seed`` if it draws random numbers (it has
    a parameter ``random_state``) and ``params`` do not set it; deterministic predictors take no
    seed."""
    estimator = estimator_class(**params)
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator


def symmetrize(p_ab: np.ndarray, p_ba: np.ndarray) -> np.ndarray:
    """Average the prediction for (a, b) with the one for (b, a) mapped back to (a, b)'s classes."""
    return 0.5 * (p_ab + p_ba[:, SWAP_CLASSES])


class PairFeatureModel(ClassifierMixin, BaseEstimator):
    """Base for predictors that turn each pair into a feature vector.

    Subclasses implement ``_pair_features(X) -> (F_ab, F_ba)`` (features of each pair in its own
    order and swapped; computing the two together lets per-text work be done once),
    ``_fit_features(F, y, sample_weight)`` (``sample_weight`` None or float[len(F)], handed to
    the underlying library's own weighted fit) and ``_proba_features(F) -> float[n, 3]``, and
    may implement ``_fit_state(X)`` (state the features need, fitted on the training rows before
    them). This class does the swap augmentation, the sample weights and the symmetric
    averaging.

    Like every predictor of this package it follows scikit-learn's estimator contract: a
    keyword-only ``__init__`` that only stores the parameters (they are checked in ``fit``), the
    seed called ``random_state``, learned state in attributes ending in ``_``, and
    ``NotFittedError`` from the prediction methods before ``fit``.
    """

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _fit_state(self, X: pd.DataFrame) -> None:
        """Fit what ``_pair_features`` needs on the training rows (nothing by default)."""

    def _fit_features(self, F: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        raise NotImplementedError

    def _proba_features(self, F: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: Any, sample_weight: Any = None) -> PairFeatureModel:
        """Fit on every pair in both orders.

        ``sample_weight`` (float[n], optional) weighs each pair, both orders alike; a pair of
        weight 0 is left out. Soft labels (a posterior per pair, e.g. Dawid–Skene's from
        :func:`~crowdtune.preference.reliability.soft_labels`) are each pair once per class,
        weighted by the class's probability.
        """
        X = check_frame(X)
        X, labels, weights, _ = weighted_rows(X, check_labels(y, len(X)), sample_weight)
        if len(labels) and not (labels == 2).any():
            warnings.warn(
                "the training comparisons have no ties: this model will predict P(tie) = 0",
                stacklevel=2,
            )
        self._fit_state(X)
        f_ab, f_ba = self._pair_features(X)
        self._fit_features(
            np.vstack([f_ab, f_ba]),
            np.concatenate([labels, swap_labels(labels)]),
            None if weights is None else np.concatenate([weights, weights]),
        )
        self.classes_ = np.arange(len(LABELS))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row, averaged over both orders of the pair."""
        check_is_fitted(self)
        X = check_frame(X)
        f_ab, f_ba = self._pair_features(X)
        return symmetrize(self._proba_features(f_ab), self._proba_features(f_ba))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)
