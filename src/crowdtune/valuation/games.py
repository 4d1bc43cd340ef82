"""Cooperative games: the ``Game`` protocol, the centroid game of Crowd-SFT and closed-form games.

A game maps coalitions (boolean rows over the players) to values. Every game here is vectorised:
``value`` scores ``k`` coalitions in one call, so estimators batch their evaluations.

The closed-form games (:class:`AdditiveGame`, :class:`UnanimityGame`,
:class:`SymmetricVotingGame`) know their own Shapley values and serve as reference answers in tests.

>>> import numpy as np
>>> game = AdditiveGame(np.array([1.0, 2.0, 3.0]))
>>> game.value(np.array([[True, False, True], [False, False, False]]))
array([4., 0.])
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from crowdtune.crowd.metrics import get_metric


@runtime_checkable
class Game(Protocol):
    """A cooperative game on ``n_players`` players with a vectorised value function."""

    n_players: int

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool, shape ``(k, n_players)``) as floats of shape ``(k,)``."""
        ...


def check_coalitions(coalitions: np.ndarray, n_players: int) -> np.ndarray:
    """Return ``coalitions`` as a boolean ``(k, n_players)`` array, or raise naming the shape."""
    array = np.asarray(coalitions)
    if array.ndim != 2 or array.shape[1] != n_players:
        raise ValueError(
            f"coalitions must have shape (k, {n_players}) for a game of {n_players} players; "
            f"got shape {array.shape}"
        )
    if array.dtype != bool:
        raise ValueError(f"coalitions must be a boolean array; got dtype {array.dtype}")
    return array


def check_finite_values(values: np.ndarray, coalitions: np.ndarray) -> np.ndarray:
    """Return ``values`` unchanged, or raise ``ValueError`` naming the first non-finite coalition.

    A NaN value would silently poison every Shapley value it touches, so it stops the estimate.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        members = np.flatnonzero(coalitions[row]).tolist()
        raise ValueError(
            f"game value is {values[row]} for the coalition of players {members} "
            f"({int(bad.sum())} of {len(values)} coalitions in this batch are not finite)"
        )
    return values


class CentroidGame:
    """Crowd-SFT's point game: a coalition is worth how close its members' mean is to the expert.

    ``v(S) = metric(mean(users[S]), expert)`` with the unweighted mean of the members' vectors.
    ``v(∅)`` is ``empty_value`` when given, else the metric of the zero vector, as published.

    Parameters
    ----------
    users : ndarray of shape (n, d)
        One vector per player.
    expert : ndarray of shape (d,)
        The target the coalition's mean is scored against.
    metric : str, default "l2"
        A name from :data:`crowdtune.crowd.metrics.METRICS` (higher is better).
    empty_value : float, optional
        Value of the empty coalition; ``None`` uses ``metric(zeros(d), expert)``.

    Examples
    --------
    >>> import numpy as np
    >>> game = CentroidGame(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([2.0, 0.0]))
    >>> game.value(np.array([[True, True], [True, False], [False, False]]))
    array([-1., -2., -2.])
    """

    def __init__(
        self,
        users: np.ndarray,
        expert: np.ndarray,
        metric: str = "l2",
        empty_value: float | None = None,
    ) -> None:
        users = np.asarray(users, dtype=float)
        expert = np.asarray(expert, dtype=float)
        if users.ndim != 2:
            raise ValueError(f"users must have shape (n, d); got shape {users.shape}")
        if expert.shape != (users.shape[1],):
            raise ValueError(
                f"expert must have shape ({users.shape[1]},) to match users of shape "
                f"{users.shape}; got shape {expert.shape}"
            )
        self.users = users
        self.expert = expert
        self.metric = metric
        self._score = get_metric(metric)
        self.empty_value = (
            float(self._score(np.zeros_like(expert), expert))
            if empty_value is None
            else float(empty_value)
        )
        self.n_players = users.shape[0]

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``, one matrix product."""
        coalitions = check_coalitions(coalitions, self.n_players)
        sizes = coalitions.sum(axis=1)
        # The max(.., 1) only avoids 0/0 for the empty rows, whose value is replaced below.
        means = (coalitions.astype(float) @ self.users) / np.maximum(sizes, 1)[:, None]
        values = np.asarray(self._score(means, self.expert), dtype=float)
        values = np.where(sizes == 0, self.empty_value, values)
        return check_finite_values(values, coalitions)

    def prefix_values(self, permutations: np.ndarray) -> np.ndarray:
        """Values of every prefix of each permutation, ``(m, n)`` int → ``(m, n + 1)`` float.

        Column ``j`` is the value of the first ``j`` players of the permutation (column 0 the empty
        coalition). Running sums make this ``O(n d)`` per permutation instead of ``O(n^2 d)``.
        """
        permutations = np.asarray(permutations)
        m, n = permutations.shape
        prefix_sums = np.cumsum(self.users[permutations], axis=1)
        prefix_means = prefix_sums / np.arange(1, n + 1, dtype=float)[None, :, None]
        values = np.empty((m, n + 1))
        values[:, 0] = self.empty_value
        values[:, 1:] = self._score(prefix_means, self.expert)
        bad = ~np.isfinite(values)
        if bad.any():  # name the first bad prefix as a coalition, with the one shared message
            row, column = (int(i) for i in np.argwhere(bad)[0])
            coalition = np.zeros((1, n), dtype=bool)
            coalition[0, permutations[row, :column]] = True
            check_finite_values(values[row, column : column + 1], coalition)
        return values


class AdditiveGame:
    """``v(S) = constant + sum(weights[S])``; each player's Shapley value is its weight.

    ``constant`` is ``v(∅)``; a non-zero one checks that estimators subtract the empty value.
    """

    def __init__(self, weights: np.ndarray, constant: float = 0.0) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.constant = float(constant)
        self.n_players = len(self.weights)

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``."""
        coalitions = check_coalitions(coalitions, self.n_players)
        return self.constant + coalitions.astype(float) @ self.weights

    def shapley_values(self) -> np.ndarray:
        """The closed-form Shapley values: the weights."""
        return self.weights.copy()


class UnanimityGame:
    """``v(S) = 1`` if every player of ``carrier`` is in ``S``, else 0.

    Shapley values are ``1/|carrier|`` on the carrier and 0 elsewhere: an asymmetric reference.
    """

    def __init__(self, n_players: int, carrier: list[int]) -> None:
        if not carrier or any(not 0 <= i < n_players for i in carrier):
            raise ValueError(
                f"carrier must be a non-empty list of players in [0, {n_players}); got {carrier}"
            )
        self.n_players = n_players
        self.carrier = sorted(set(carrier))

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``."""
        coalitions = check_coalitions(coalitions, self.n_players)
        return coalitions[:, self.carrier].all(axis=1).astype(float)

    def shapley_values(self) -> np.ndarray:
        """The closed-form Shapley values."""
        values = np.zeros(self.n_players)
        values[self.carrier] = 1.0 / len(self.carrier)
        return values


class SymmetricVotingGame:
    """``v(S) = 1`` if ``|S| > n/2`` (a strict majority), else 0; each player gets ``1/n``."""

    def __init__(self, n_players: int) -> None:
        if n_players < 1:
            raise ValueError(f"n_players must be at least 1; got {n_players}")
        self.n_players = n_players

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``."""
        coalitions = check_coalitions(coalitions, self.n_players)
        return (coalitions.sum(axis=1) > self.n_players / 2).astype(float)

    def shapley_values(self) -> np.ndarray:
        """The closed-form Shapley values (by symmetry and efficiency)."""
        return np.full(self.n_players, 1.0 / self.n_players)
