"""Prior-shift adaptation: a target's A/B/tie shares estimated from its own unlabelled pairs.

The tie rate differs between sources (10.5 % in PandaLM, 23.8 % in the MT-Bench human votes), so
a predictor trained on one source is miscalibrated on another even when ``p(x | class)`` carries
over. Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a
priori probabilities: a simple procedure", Neural Computation 14(1):21-41, estimate the new
priors by EM on the predicted posteriors: re-weight each posterior by ``target / train`` and
renormalise (E step), set the target shares to the mean re-weighted posterior (M step), repeat.

Here the estimate is symmetric under swapping A and B by construction: the predictors see every
pair in both orders, so their implicit training priors have ``share_A == share_B``, and which
response is shown first cannot tell the shares apart either. EM therefore runs on the posteriors
pooled with their swapped copy, which is the same as constraining ``share_A == share_B``: only
the tie share moves (the A/B split symmetry allows is 50/50), and EM reduces to one parameter on
``P(tie)`` against ``P(A) + P(B)``, whose fixed point (the maximum of a concave likelihood) is
found by bisection rather than by iterating EM (see :func:`_ml_tie_share`). Swapping A and B in
the inputs leaves the estimate unchanged and swaps the A/B columns of the adapted probabilities
exactly.

Why hand-written: scikit-learn has no prior-shift estimator, and QuaPy (``EMQ``, the same
algorithm) is not installed, works on its own data collections, and cannot take the symmetry
constraint; with the constraint the algorithm is a few lines of numpy, vectorised over bootstrap
resamples for the interval.

Caveat, measured on real data: the method assumes only the class shares differ between training
and target (``p(x | class)`` unchanged) and that the posteriors are calibrated. Across the
preference datasets neither holds (answer lengths differ too), and there the estimated tie share
can move the wrong way and raise the log loss; adapt where the target is known to differ mainly
in its tie rate, and check with ``preference evaluate --adapt-priors`` on labelled data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from crowdtune.preference.base import SWAP_CLASSES, check_frame, check_labels, check_sample_weight
from crowdtune.preference.metrics import check_proba
from crowdtune.records import LABELS
from crowdtune.stats import bootstrap_count_blocks

#: The EM fixed point is found to this precision (of the tie share).
TOL = 1e-10
#: Bisection steps at most (each is O(rows)); 40 reach :data:`TOL`.
MAX_ITER = 100


def check_priors(priors: Any, name: str = "priors") -> np.ndarray:
    """``priors`` as float[3] (shares of A, B, TIE), non-negative and summing to 1."""
    p = np.asarray(priors, dtype=float)
    if p.shape != (3,) or not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1) > 1e-6:
        raise ValueError(f"{name} must be 3 non-negative shares (A, B, TIE) summing to 1; got {p}")
    return p


def symmetric_shares(labels: Any, sample_weight: Any = None) -> np.ndarray:
    """Class shares of ``labels`` (each weighted by ``sample_weight``, default 1) over both
    orders of each pair: ``[(A+B)/2, (A+B)/2, TIE]``, the priors a predictor trained on both
    orders has seen."""
    y = check_labels(labels, len(np.asarray(labels)))
    weights = check_sample_weight(sample_weight, len(y))
    if not y.size:
        raise ValueError("class shares need at least one label")
    weights = np.ones(len(y)) if weights is None else weights
    counts = np.bincount(y, weights, minlength=3) / weights.sum()
    return np.array([(counts[0] + counts[1]) / 2, (counts[0] + counts[1]) / 2, counts[2]])


def adjust_priors(proba: Any, train_priors: Any, target_priors: Any) -> np.ndarray:
    """Posteriors under ``target_priors`` from posteriors under ``train_priors``: each class
    re-weighted by ``target / train`` and each row renormalised (Bayes' rule with
    ``p(x | class)`` unchanged). A class with no training share keeps probability 0."""
    p = check_proba(proba, len(np.asarray(proba)))
    train = check_priors(train_priors, "train_priors")
    target = check_priors(target_priors, "target_priors")
    ratio = np.divide(target, train, out=np.zeros(3), where=train > 0)
    weighted = p * ratio
    # A and B summed first (a + b == b + a exactly), so swapped inputs give swapped outputs.
    total = (weighted[:, 0] + weighted[:, 1]) + weighted[:, 2]
    if (total <= 0).any():
        row = int(np.flatnonzero(total <= 0)[0])
        raise ValueError(f"row {row} has no probability left under target_priors {target}")
    return weighted / total[:, None]


def _ml_tie_share(
    p_tie: np.ndarray, p_ab: np.ndarray, train_tie: float, weights: np.ndarray, max_iter: int,
    tol: float,
) -> np.ndarray:  # fmt: skip
    """The tie share EM converges to, one per row of ``weights`` (float[draws, n], each row
    summing to 1: the plain mean, or bootstrap counts / n).

    EM's fixed points are the stationary points of the marginal log likelihood
    ``L(t) = sum_i w_i log(p_tie_i t / t_train + p_ab_i (1 - t) / (1 - t_train))``, which is
    concave in ``t`` (a log of an affine function), so the fixed point is its unique maximiser on
    [0, 1]. Bisection on the sign of ``L'(t)`` reaches it to ``tol`` in ~log2(1/tol) steps, also
    at the boundary t = 0 or 1, where EM's steps shrink and it stops short of the optimum
    depending on ``max_iter``.
    """
    a, b = p_tie / train_tie, p_ab / (1 - train_tie)
    low, high = np.zeros(len(weights)), np.ones(len(weights))
    for _ in range(max_iter):
        mid = 0.5 * (low + high)
        denominator = np.maximum(
            a[None, :] * mid[:, None] + b[None, :] * (1 - mid[:, None]), 1e-300
        )
        rising = np.einsum("bn,bn->b", weights, (a - b)[None, :] / denominator) > 0
        low, high = np.where(rising, mid, low), np.where(rising, high, mid)
        if (high - low).max() < tol:
            break
    return 0.5 * (low + high)


def _tie_shares(
    proba: np.ndarray, train: np.ndarray, weights: np.ndarray, max_iter: int, tol: float
) -> np.ndarray:
    """Symmetric EM estimates of the tie share per row of ``weights``; the training share where
    the training priors leave nothing to adapt (no ties, or only ties)."""
    if not 0 < train[2] < 1:
        return np.full(len(weights), train[2])
    return _ml_tie_share(proba[:, 2], proba[:, 0] + proba[:, 1], train[2], weights, max_iter, tol)


def _as_shares(tie: np.ndarray) -> np.ndarray:
    """float[k, 3] symmetric shares from tie shares."""
    return np.stack([(1 - tie) / 2, (1 - tie) / 2, tie], axis=-1)


def estimate_priors(
    proba: Any, train_priors: Any, *, max_iter: int = MAX_ITER, tol: float = TOL
) -> np.ndarray:
    """The class shares (A, B, TIE) of the pairs behind ``proba``, by symmetric EM.

    ``proba`` are a predictor's posteriors on the unlabelled target pairs, ``train_priors`` the
    shares it was trained under (symmetrised: A and B averaged, see the module docstring). The
    result has ``share_A == share_B``; with training priors of 0 or 1 for ties there is nothing to
    adapt and the symmetrised training priors come back.
    """
    p = check_proba(proba, len(np.asarray(proba)))
    if not len(p):
        raise ValueError("estimating priors needs at least one row of probabilities")
    train = _symmetrised(check_priors(train_priors, "train_priors"))
    tie = _tie_shares(p, train, np.full((1, len(p)), 1.0 / len(p)), max_iter, tol)
    return _as_shares(tie)[0]


def bootstrap_priors(
    proba: Any,
    train_priors: Any,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> np.ndarray:
    """Percentile bootstrap interval of :func:`estimate_priors` over rows: float[3, 2], one
    ``[low, high]`` per class (A, B, TIE). Every resample runs its own EM (vectorised: the
    resamples are row weights)."""
    p = check_proba(proba, len(np.asarray(proba)))
    if not len(p) or n_bootstrap < 1:
        raise ValueError(f"need rows and n_bootstrap >= 1; got {len(p)} rows, {n_bootstrap}")
    train = _symmetrised(check_priors(train_priors, "train_priors"))
    ties = [
        _tie_shares(p, train, counts / len(p), max_iter, tol)
        for counts in bootstrap_count_blocks(len(p), n_bootstrap, seed)
    ]
    alpha = (1 - level) / 2
    bounds = np.quantile(_as_shares(np.concatenate(ties)), [alpha, 1 - alpha], axis=0)
    return bounds.T


def _symmetrised(priors: np.ndarray) -> np.ndarray:
    return 0.5 * (priors + priors[SWAP_CLASSES])


def priors_summary(
    train: np.ndarray, estimated: np.ndarray, ci: np.ndarray | None
) -> dict[str, Any]:
    """JSON-ready shares by class name: ``{"train", "estimated", "ci"}``."""
    names = [label.lower() for label in LABELS]
    return {
        "train": dict(zip(names, map(float, train), strict=True)),
        "estimated": dict(zip(names, map(float, estimated), strict=True)),
        "ci": None
        if ci is None
        else {n: [float(lo), float(hi)] for n, (lo, hi) in zip(names, ci, strict=True)},
    }


class PriorAdapted(ClassifierMixin, BaseEstimator):
    """A predictor whose probabilities are re-weighted to the class shares of the data predicted.

    ``fit`` fits a clone of ``estimator`` and records the training shares (symmetrised:
    :func:`symmetric_shares`). ``predict_proba(X)`` estimates the target shares from the inner
    model's predictions on ``X`` itself (:func:`estimate_priors`) and re-weights them
    (:func:`adjust_priors`), so a row's prediction depends on the rest of the batch: predict a
    whole target set at once, not row by row. The last estimate is kept in ``priors_`` (float[3])
    with its bootstrap interval ``priors_ci_`` (float[3, 2]; ``None`` with ``n_bootstrap=0``).

    Parameters
    ----------
    estimator
        Any predictor of this package (ideally calibrated: EM trusts the posteriors).
    n_bootstrap
        Bootstrap resamples for ``priors_ci_``; 0 skips the interval.
    max_iter, tol
        EM stopping rule.
    random_state
        Seed of the bootstrap.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        n_bootstrap: int = 200,
        max_iter: int = MAX_ITER,
        tol: float = TOL,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.n_bootstrap = n_bootstrap
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any, **fit_params: Any) -> PriorAdapted:
        """Fit the inner predictor on ``(X, y)`` (``fit_params`` passed on) and record the
        training shares."""
        X = check_frame(X)
        labels = check_labels(y, len(X))
        self.estimator_ = clone(self.estimator).fit(X, labels, **fit_params)
        self.train_priors_ = symmetric_shares(labels, fit_params.get("sample_weight"))
        self.classes_ = np.arange(len(LABELS))
        return self

    @classmethod
    def from_fitted(cls, estimator: Any, train_priors: Any, **params: Any) -> PriorAdapted:
        """Wrap an already fitted predictor (a saved model) trained under ``train_priors``."""
        model = cls(estimator, **params)
        model.estimator_ = estimator
        model.train_priors_ = _symmetrised(check_priors(train_priors, "train_priors"))
        model.classes_ = np.arange(len(LABELS))
        return model

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row under the class shares estimated on ``X``."""
        check_is_fitted(self)
        return self.adapt(self.estimator_.predict_proba(check_frame(X)))

    def adapt(self, proba: Any) -> np.ndarray:
        """The inner model's probabilities ``proba`` on a target set, re-weighted to the shares
        estimated from them (sets ``priors_`` and ``priors_ci_``)."""
        check_is_fitted(self)
        raw = check_proba(proba, len(np.asarray(proba)))
        if not len(raw):
            return raw
        self.priors_ = estimate_priors(
            raw, self.train_priors_, max_iter=self.max_iter, tol=self.tol
        )
        self.priors_ci_ = (
            bootstrap_priors(
                raw,
                self.train_priors_,
                n_bootstrap=self.n_bootstrap,
                seed=self.random_state,
                max_iter=self.max_iter,
                tol=self.tol,
            )  # fmt: skip
            if self.n_bootstrap > 0
            else None
        )
        return adjust_priors(raw, self.train_priors_, self.priors_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)

    def priors_summary(self) -> dict[str, Any]:
        """The training and last estimated shares with the interval, JSON-ready."""
        check_is_fitted(self, "priors_")
        return priors_summary(self.train_priors_, self.priors_, self.priors_ci_)
