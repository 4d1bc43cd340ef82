"""A weighted average of predictors (a linear opinion pool) that transfers to unseen datasets.

How the members are weighed (``weights``) was chosen leave-one-dataset-out on PandaLM, LLMEval²
and MT-Bench (benchmarks/RESULTS.md, issue #21): weights fitted on out-of-fold predictions follow
the training datasets' quirks, and with two or three datasets the out-of-fold predictions of
models trained on one dataset say little about models trained on two. Equal weights of the
length rule, the tie-aware model and the text-feature GBDT transferred best (forecast combination's
old lesson: the simple average is hard to beat when the weights are estimated from little).
``weights="select"`` keeps the rule "never worse than the best member" on the dataset-grouped
out-of-fold log loss: every member alone, the equal pool and the fitted pool compete there, the
fitted pool scored on folds its weights did not see.
"""

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
    fold_index,
    out_of_fold_proba,
)
from crowdtune.preference.cv import dataset_of
from crowdtune.preference.metrics import EPS, row_log_loss
from crowdtune.preference.models import FeaturesGBDT, LengthModel
from crowdtune.preference.ties import TieAwareModel
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


#: The ensemble's default members by ``--model`` name, chosen leave-one-dataset-out: the length
#: rule (best on PandaLM), the tie-aware model (best on MT-Bench) and the text-feature GBDT.
#: ``difference-bucket`` and ``embedding-gbdt`` transferred worse and only cost time.
DEFAULT_MEMBERS: dict[str, type[BaseEstimator]] = {
    "length": LengthModel,
    "tie-aware": TieAwareModel,
    "features-gbdt": FeaturesGBDT,
}

#: How :class:`EnsembleModel` weighs its members: ``equal`` (default; transferred best),
#: ``fitted`` (log-loss-optimal on the out-of-fold predictions), ``select`` (the best of every
#: member alone, ``equal`` and ``fitted`` on the out-of-fold log loss).
WEIGHTINGS = ("equal", "fitted", "select")


def default_members(random_state: int = 0) -> list[tuple[str, Any]]:
    """The ensemble's default members, :data:`DEFAULT_MEMBERS` by name, seeded with
    ``random_state``."""
    return [(name, seeded(cls, random_state)) for name, cls in DEFAULT_MEMBERS.items()]


def select_weights(
    oof: list[np.ndarray], y: np.ndarray, fold: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[str, np.ndarray, dict[str, float]]:
    """The weighting with the lowest out-of-fold log loss (rows weighted by ``sample_weight``,
    default equally): ``(choice, weights, scores)``.

    Candidates: each member alone (named by its index ``"member0"``, ...), ``"equal"`` and
    ``"fitted"``. The fitted pool is scored honestly: the rows of fold ``k`` get weights fitted on
    the other folds' rows, so it does not win on weights that saw the rows they are scored on.
    Ties go to the earlier candidate (a single member before a pool).
    """
    k = len(oof)
    rows = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    fitted_rows = np.empty(len(y))
    for f in np.unique(fold):
        held = fold == f
        w = fit_pool_weights([p[~held] for p in oof], y[~held], rows[~held])
        fitted_rows[held] = row_log_loss(y[held], _pool(oof, w, held))
    candidates = {f"member{j}": np.eye(k)[j] for j in range(k)} | {"equal": np.full(k, 1 / k)}
    scores = {
        name: float(np.average(row_log_loss(y, _pool(oof, w)), weights=rows))
        for name, w in candidates.items()
    }
    scores["fitted"] = float(np.average(fitted_rows, weights=rows))
    choice = min(scores, key=lambda name: scores[name])
    weights = fit_pool_weights(oof, y, rows) if choice == "fitted" else candidates[choice]
    return choice, weights, scores


def _pool(probas: list[np.ndarray], weights: np.ndarray, rows: Any = slice(None)) -> np.ndarray:
    return np.asarray(sum(w * p[rows] for w, p in zip(weights, probas, strict=True)))


class EnsembleModel(ClassifierMixin, BaseEstimator):
    """Members averaged (a linear opinion pool), weighed for data from datasets they never saw.

    Parameters
    ----------
    members
        ``[(name, estimator), ...]``; ``None`` means :func:`default_members` (length, tie-aware,
        features-gbdt).
    weights
        One of :data:`WEIGHTINGS`. ``"equal"`` (default) needs no out-of-fold predictions unless
        ``calibrate``; ``"fitted"`` and ``"select"`` fit on them.
    n_splits, random_state
        Folds for the out-of-fold predictions; ``random_state`` also seeds the default members.
    fold_groups
        ``"dataset"`` (default): when the training rows come from two or more datasets (the
        ``source`` column, see :func:`~crowdtune.preference.cv.dataset_of`), each member is
        predicted on each dataset by a fit on the others, so weights and temperature reward what
        transfers to data a model never saw; with one dataset, folds are grouped by prompt.
        ``"prompt"``: always folds grouped by prompt (best in-distribution).
    calibrate
        Fit a temperature on the pooled out-of-fold predictions (off by default: fitted across
        datasets it softened the pool and lost leave-one-dataset-out).

    Attributes
    ----------
    weights_
        float[k] member weights, summing to 1.
    choice_
        ``"equal"``, ``"fitted"`` or, with ``weights="select"``, the winning candidate (a member's
        name, ``"equal"`` or ``"fitted"``).
    oof_scores_
        With ``weights="select"``: the out-of-fold log loss of every candidate (members by name);
        otherwise empty.
    """

    def __init__(
        self,
        *,
        members: list[tuple[str, Any]] | None = None,
        weights: str = "equal",
        n_splits: int = 5,
        random_state: int = 0,
        fold_groups: str = "dataset",
        calibrate: bool = False,
    ) -> None:
        self.members = members
        self.weights = weights
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
        """Weigh the members (on out-of-fold predictions unless ``weights="equal"``), then fit
        every member on every row; ``sample_weight`` (float[n], optional) weighs the rows of all
        these fits."""
        check_choice(self.fold_groups, ("dataset", "prompt"), "fold grouping")
        check_choice(self.weights, WEIGHTINGS, "ensemble weighting")
        X = check_frame(X)
        X, labels, rows, groups = weighted_rows(X, check_labels(y, len(X)), sample_weight, groups)
        members = self.members if self.members is not None else default_members(self.random_state)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.names_ = [name for name, _ in members]
        k = len(members)
        self.weights_, self.choice_, self.oof_scores_ = np.full(k, 1 / k), "equal", {}
        self.temperature_ = 1.0
        if self.weights != "equal" or self.calibrate:
            groups = self._fold_groups(X, groups)
            fold = fold_index(X, groups, self.n_splits, self.random_state)
            oof = [
                out_of_fold_proba(est, X, labels, groups, self.n_splits, self.random_state, rows)
                for _, est in members
            ]
            if self.weights == "fitted":
                self.weights_, self.choice_ = fit_pool_weights(oof, labels, rows), "fitted"
            elif self.weights == "select":
                choice, self.weights_, scores = select_weights(oof, labels, fold, rows)
                rename = {f"member{j}": name for j, name in enumerate(self.names_)}
                self.choice_ = rename.get(choice, choice)
                self.oof_scores_ = {rename.get(c, c): v for c, v in scores.items()}
            self.oof_proba_ = _pool(oof, self.weights_)
            if self.calibrate:
                self.temperature_ = fit_temperature(self.oof_proba_, labels, rows)
        self.estimators_ = [fit_weighted(clone(est), X, labels, rows) for _, est in members]
        self.classes_ = np.arange(3)
        return self

    def _fold_groups(self, X: pd.DataFrame, groups: np.ndarray | None) -> np.ndarray | None:
        """Out-of-fold groups: ``groups`` if given, else datasets (see ``fold_groups``), else
        ``None`` (by prompt). Sets ``fold_groups_``: ``"given"``, ``"dataset"`` or ``"prompt"``."""
        self.fold_groups_ = "prompt" if groups is None else "given"
        if groups is None and self.fold_groups == "dataset" and "source" in X.columns:
            datasets = dataset_of(X)
            if datasets.nunique() > 1:
                groups, self.fold_groups_ = pd.factorize(datasets)[0], "dataset"
        return groups

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row: the members' weighted average (temperature-scaled if
        ``calibrate``). Members with weight 0 are not run."""
        check_is_fitted(self)
        X = check_frame(X)
        used = [(w, m) for w, m in zip(self.weights_, self.estimators_, strict=True) if w > 0]
        pooled = _pool([m.predict_proba(X) for _, m in used], np.array([w for w, _ in used]))
        return apply_temperature(pooled, self.temperature_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)
