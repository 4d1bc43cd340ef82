"""Learners: what a coalition's feedback trains, and how a candidate is scored.

The ``Learner`` protocol is shared by the valuation games (:class:`~crowdtune.valuation.games.
LearnerGame`) and by Crowd-SFT rounds (:mod:`crowdtune.crowd`): ``fit(base, feedback)`` returns a
candidate trained from ``base`` on a group's feedback, ``score(candidate)`` says how good it is
(higher is better). Implementations may accept leading batch axes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from crowdtune.spaces.metrics import get_metric


class Learner(Protocol):
    def fit(self, base: Any, feedback: Any) -> Any: ...

    def score(self, candidate: Any) -> Any: ...


class PointLearner:
    """The model is a point in a vector space (the published MovieLens simulation).

    ``fit`` moves the base a step ``delta`` toward the feedback, the group's (weighted) centroid:
    ``candidate = base + delta * (centroid - base)``. ``score`` is ``metric(candidate, expert)``.
    Both broadcast over leading axes, so one call serves every group of every run.

    Parameters
    ----------
    expert : ndarray of shape (..., n_dims)
        The target; its leading axes must broadcast against the candidates'.
    metric : str
        One of ``crowdtune.spaces.metrics.METRICS``.
    delta : float
        Step size in (0, 1] (published: 0.1).
    """

    def __init__(self, expert: np.ndarray, *, metric: str = "l2", delta: float = 0.1) -> None:
        if not 0.0 < delta <= 1.0:
            raise ValueError(f"delta must be in (0, 1], got {delta}")
        self.expert = expert
        self.metric = metric
        self.delta = delta
        self._score = get_metric(metric)

    def fit(self, base: np.ndarray, feedback: np.ndarray) -> np.ndarray:
        return base + self.delta * (feedback - base)

    def score(self, candidate: np.ndarray) -> np.ndarray:
        return self._score(candidate, self.expert)


class SklearnLearner:
    """The model is a scikit-learn estimator trained from scratch on a group's ``(X, y)``.

    ``fit(base, feedback)`` fits a fresh :func:`sklearn.base.clone` of ``estimator`` on
    ``feedback = (X, y)``; ``base`` is unused (every candidate starts untrained, there is no warm
    start), so a game or round may pass any fitted model there to be scored as the starting point.
    ``score(model)`` is ``sklearn.metrics.get_scorer(scoring)(model, X_test, y_test)``.

    A classifier cannot be fitted on a single class, which small coalitions often hold: then the
    candidate is a ``DummyClassifier(strategy="most_frequent")`` fitted on that data, which
    predicts the one class it saw. Scorers that need probabilities of every class (``roc_auc``,
    ``neg_log_loss``) may still fail on it.

    Parameters
    ----------
    estimator : sklearn estimator
        Cloned, never fitted itself.
    X_test : array-like of shape (n_test, n_features)
        Held-out inputs every candidate is scored on.
    y_test : array-like of shape (n_test,)
        Their labels or targets.
    scoring : str, default "accuracy"
        A scikit-learn scorer name (higher is better).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> learner = SklearnLearner(LogisticRegression(), X, y)
    >>> learner.score(learner.fit(None, (X, y)))
    1.0
    >>> learner.score(learner.fit(None, (X[:2], y[:2])))  # one class: always predicts 0
    0.5
    """

    def __init__(
        self, estimator: Any, X_test: Any, y_test: Any, *, scoring: str = "accuracy"
    ) -> None:
        from sklearn.metrics import get_scorer

        self.estimator = estimator
        self.X_test = X_test
        self.y_test = y_test
        self.scoring = scoring
        self._scorer = get_scorer(scoring)  # an unknown name fails here, listing the choices

    def fit(self, base: Any, feedback: tuple[Any, Any]) -> Any:
        """A fresh clone of the estimator fitted on ``feedback = (X, y)``; ``base`` is unused."""
        from sklearn.base import clone, is_classifier
        from sklearn.dummy import DummyClassifier

        if not isinstance(feedback, tuple | list) or len(feedback) != 2:
            raise ValueError(
                f"feedback must be a pair (X, y); got {type(feedback).__name__}"
                + (f" of length {len(feedback)}" if isinstance(feedback, tuple | list) else "")
            )
        X, y = feedback
        if is_classifier(self.estimator) and len(np.unique(y)) == 1:
            return DummyClassifier(strategy="most_frequent").fit(X, y)
        return clone(self.estimator).fit(X, y)

    def score(self, candidate: Any) -> float:
        """The scorer's value of a fitted ``candidate`` on the test set (higher is better)."""
        return float(self._scorer(candidate, self.X_test, self.y_test))
