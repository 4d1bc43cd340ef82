"""Point metrics: how close a model point is to a target point in a vector space (higher is
better).

Crowd-SFT rounds (:mod:`crowdtune.crowd`) score candidates with them, and the centroid game of
:mod:`crowdtune.valuation` values coalitions with them. Every metric works on the last axis and
broadcasts over any leading axes, so one call scores all candidates of all runs of a batch at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crowdtune.validation import check_choice

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def l2_score(points: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance, ``-||a - e||_2`` (the published default)."""
    return -np.sqrt(np.sum((points - expert) ** 2, axis=-1))


def l1_score(points: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """Negative Manhattan distance, ``-||a - e||_1``."""
    return -np.sum(np.abs(points - expert), axis=-1)


def dot_score(points: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """Dot product ``a . e`` as published; it rewards length as much as direction."""
    return np.sum(points * expert, axis=-1)


def cosine_score(points: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """Cosine similarity; 0 where either vector is zero."""
    norms = np.linalg.norm(points, axis=-1) * np.linalg.norm(expert, axis=-1)
    dots = np.sum(points * expert, axis=-1)
    return np.divide(dots, norms, out=np.zeros_like(dots, dtype=float), where=norms > 0)


METRICS: dict[str, Metric] = {
    "l2": l2_score,
    "l1": l1_score,
    "dot": dot_score,
    "cosine": cosine_score,
}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name raises ``ValueError`` listing the choices."""
    check_choice(name, METRICS, "metric")
    return METRICS[name]
