"""Learners: what a group's feedback trains, and how a candidate is scored.

The ``Learner`` protocol is shared by Crowd-SFT rounds and (later) valuation games: ``fit(base,
feedback)`` returns a candidate trained from ``base`` on a group's feedback, ``score(candidate)``
says how good it is (higher is better). Implementations may accept leading batch axes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from crowdtune.crowd.metrics import get_metric


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
        One of ``crowdtune.crowd.metrics.METRICS``.
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
