"""Point schemes: how contributors earn points from the outcome of a round.

A scheme sees a :class:`RoundOutcome` (who was in which group, how the evaluator ranked the
groups, whether the model moved, each group's metric gain, and the users' own vectors) and
returns every user's increment. Schemes are objects with ``start`` and ``award`` so that schemes
which learn across rounds (a per-user regression over all rounds so far, say) keep their state
between calls; the two published ones are stateless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from crowdtune.validation import check_choice

SCHEMES = ("rank", "marginal")


@dataclass(frozen=True)
class RoundOutcome:
    """What happened in one round, for every run of a batch.

    Attributes
    ----------
    round_index : int
        0-based round number.
    groups : ndarray of int, shape (n_runs, n_users)
        Every user's group.
    rank_of_group : ndarray of int, shape (n_runs, n_groups)
        The evaluator's rank of each group's candidate, 0 = chosen (after evaluator error).
    improved : ndarray of bool, shape (n_runs,)
        Whether the model moved this round.
    gains : ndarray of shape (n_runs, n_groups)
        Each candidate's true metric minus the current model's.
    users : ndarray of shape (n_runs, n_users, n_dims)
        The users' vectors (per-user schemes may use them).
    """

    round_index: int
    groups: np.ndarray
    rank_of_group: np.ndarray
    improved: np.ndarray
    gains: np.ndarray
    users: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.rank_of_group.shape[1])


class PointScheme(Protocol):
    """Turns round outcomes into per-user point increments."""

    name: str

    def start(self, n_runs: int, n_users: int) -> None:
        """Reset any state before the first round of a batch of runs."""

    def award(self, outcome: RoundOutcome) -> np.ndarray:
        """Point increments of shape (n_runs, n_users) for this round."""
        ...


class RankPoints:
    """Published scheme: in a round where the model moves, every member of the group ranked
    ``r`` (0 = chosen) gets ``G - r`` points; nothing happens in other rounds."""

    name = "rank"

    def start(self, n_runs: int, n_users: int) -> None:
        pass

    def award(self, outcome: RoundOutcome) -> np.ndarray:
        group_points = np.where(
            outcome.improved[:, None], outcome.n_groups - outcome.rank_of_group, 0
        )
        return np.take_along_axis(group_points, outcome.groups, axis=1).astype(float)


class MarginalPoints:
    """Every member of a group gets the group's metric gain over the current model, every round.

    Gains can be negative, so points can fall below zero (the centroid weights clip them at 0).
    """

    name = "marginal"

    def start(self, n_runs: int, n_users: int) -> None:
        pass

    def award(self, outcome: RoundOutcome) -> np.ndarray:
        return np.take_along_axis(outcome.gains, outcome.groups, axis=1)


def get_scheme(name: str) -> PointScheme:
    """A fresh point scheme called ``name``; unknown names raise ``ValueError`` with the choices."""
    if name == "rank":
        return RankPoints()
    if name == "marginal":
        return MarginalPoints()
    check_choice(name, SCHEMES, "point scheme")
    raise AssertionError("unreachable")
