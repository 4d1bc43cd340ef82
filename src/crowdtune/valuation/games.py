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

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crowdtune.spaces.metrics import get_metric
from crowdtune.valuation.learners import Learner


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
        raise NonFiniteValueError(
            f"game value is {values[row]} for the coalition of players {members} "
            f"({int(bad.sum())} of {len(values)} coalitions in this batch are not finite)"
        )
    return values


class NonFiniteValueError(ValueError):
    """A game value is NaN or infinite; the message names the coalition."""


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
        A name from :data:`crowdtune.spaces.metrics.METRICS` (higher is better).
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
        for name, array in (("users", users), ("expert", expert)):
            bad = np.argwhere(~np.isfinite(array))
            if len(bad):
                where = list(map(int, bad[0]))
                raise ValueError(f"{name} must be finite; {name}{where} is {array[tuple(bad[0])]}")
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


def default_collate(items: Sequence[Any]) -> Any:
    """Join the feedback of a coalition's members into one training set.

    Arrays are concatenated along the first axis, tuples (such as ``(X, y)``) element by element,
    and lists (of records) end to end.

    >>> X, y = default_collate([(np.ones((1, 2)), np.array([0])), (np.zeros((2, 2)), np.ones(2))])
    >>> X.shape, y.tolist()
    ((3, 2), [0.0, 1.0, 1.0])
    """
    first = items[0]
    if all(isinstance(item, np.ndarray) for item in items):
        return np.concatenate(items, axis=0)
    if all(isinstance(item, tuple) and len(item) == len(first) for item in items):
        return tuple(default_collate([item[j] for item in items]) for j in range(len(first)))
    if all(isinstance(item, list) for item in items):
        return [record for item in items for record in item]
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(
        "the default collate joins numpy arrays, tuples of arrays of one length or lists; got "
        f"feedback of type {', '.join(kinds)}: pass collate= to join it"
    )


class LearnerGame:
    """A coalition is worth the score of a candidate trained on its members' feedback.

    ``v(S) = learner.score(learner.fit(base, collate([feedback[i] for i in S])))`` for a non-empty
    ``S``, with the :class:`~crowdtune.valuation.learners.Learner` protocol of Crowd-SFT rounds, so
    credit is computed for whatever a round trains. ``v(∅)`` is ``empty_value`` when given, else
    ``learner.score(base)`` (the untrained candidate).

    Every coalition costs a training run, so ``value`` loops over rows and, by default, caches
    values by coalition: permutation samplers revisit small and large coalitions often. Use it
    with :func:`~crowdtune.valuation.estimators.exact_shapley` for a handful of players, else with
    a budgeted :func:`~crowdtune.valuation.estimators.permutation_shapley`.

    Parameters
    ----------
    learner : Learner
        Trains (``fit(base, feedback)``) and scores (``score(candidate)``, higher is better).
    feedback : sequence
        One item per player: that player's training data.
    base : any, optional
        The starting candidate passed to every ``fit``; also scored as ``v(∅)`` when
        ``empty_value`` is not given.
    collate : callable, optional
        Joins a list of feedback items into the training data of one ``fit``; the default is
        :func:`default_collate`.
    empty_value : float, optional
        ``v(∅)``; one of ``empty_value`` and ``base`` is required.
    cache : bool, default True
        Remember each coalition's value, keyed by its membership bits.

    Attributes
    ----------
    n_fits : int
        Training runs made so far (cache hits and the empty coalition make none).

    Examples
    --------
    >>> from crowdtune.valuation.learners import PointLearner
    >>> learner = PointLearner(np.array([2.0, 0.0]), delta=1.0)
    >>> feedback = [np.array([[0.0, 0.0]]), np.array([[2.0, 0.0]])]
    >>> game = LearnerGame(learner, feedback, base=np.zeros(2),
    ...                    collate=lambda items: np.concatenate(items).mean(axis=0))
    >>> game.value(np.array([[True, True], [True, False], [False, False], [True, True]]))
    array([-1., -2., -2., -1.])
    >>> game.n_fits  # the repeated coalition came from the cache
    2
    """

    def __init__(
        self,
        learner: Learner,
        feedback: Sequence[Any],
        *,
        base: Any = None,
        collate: Callable[[list[Any]], Any] | None = None,
        empty_value: float | None = None,
        cache: bool = True,
    ) -> None:
        if len(feedback) < 1:
            raise ValueError("feedback must hold one item per player; got no items")
        if empty_value is None and base is None:
            raise ValueError(
                "LearnerGame needs empty_value or base to value the empty coalition: "
                "pass empty_value=, or base= to use learner.score(base)"
            )
        if empty_value is not None and not np.isfinite(empty_value):
            raise ValueError(f"empty_value must be finite; got {empty_value}")
        self.learner = learner
        self.feedback = feedback
        self.base = base
        self.collate = default_collate if collate is None else collate
        self.empty_value = None if empty_value is None else float(empty_value)
        self.n_players = len(feedback)
        self.n_fits = 0
        self._cache: dict[bytes, float] | None = {} if cache else None

    def _evaluate(self, members: np.ndarray) -> float:
        """The value of the coalition of player indices ``members``, training if non-empty."""
        try:
            if len(members) == 0:
                if self.empty_value is not None:
                    return self.empty_value
                return float(self.learner.score(self.base))
            data = self.collate([self.feedback[i] for i in members])
            candidate = self.learner.fit(self.base, data)
            self.n_fits += 1
            return float(self.learner.score(candidate))
        except Exception as error:
            raise ValueError(
                f"the learner failed on the coalition of players {members.tolist()}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``, one fit per new row."""
        coalitions = check_coalitions(coalitions, self.n_players)
        values = np.empty(len(coalitions))
        for row, coalition in enumerate(coalitions):
            if self._cache is None:
                values[row] = self._evaluate(np.flatnonzero(coalition))
                continue
            key = np.packbits(coalition).tobytes()
            if key not in self._cache:
                self._cache[key] = self._evaluate(np.flatnonzero(coalition))
            values[row] = self._cache[key]
        return check_finite_values(values, coalitions)
