"""Shapley value estimators: exact enumeration and antithetic permutation Monte Carlo.

Both take any :class:`~crowdtune.valuation.games.Game` and return a
:class:`~crowdtune.valuation.result.ValuationResult`. The value of the empty coalition counts:
a player's marginal contribution when it joins nobody is ``v({i}) - v(∅)``, so the values add up
to ``v(N) - v(∅)`` (efficiency), which :func:`check_efficiency` verifies.

>>> import numpy as np
>>> from crowdtune.valuation.games import AdditiveGame
>>> game = AdditiveGame(np.array([1.0, 2.0, 3.0]), constant=5.0)
>>> exact_shapley(game).values
array([1., 2., 3.])
>>> result = permutation_shapley(game, n_permutations=4, rng=0)
>>> bool(np.allclose(result.values, [1.0, 2.0, 3.0]))
True
"""

from __future__ import annotations

import math
import time

import numpy as np

from crowdtune.valuation.games import CentroidGame, Game, check_finite_values
from crowdtune.valuation.result import ValuationResult

#: Largest game :func:`exact_shapley` enumerates; 2^20 coalitions take about a second.
MAX_EXACT_PLAYERS = 20
#: Coalitions evaluated per call to ``game.value`` during enumeration, to bound memory.
EXACT_CHUNK = 2**16
#: Upper bound on the coalitions (pairs × 2 × (n + 1)) of one permutation batch.
BATCH_COALITIONS = 2**16
#: Upper bound on the antithetic pairs of one batch, so a seconds budget is checked often enough.
MAX_BATCH_PAIRS = 256


def total_value(game: Game) -> float:
    """``v(N) - v(∅)``: what the Shapley values of ``game`` must add up to."""
    n = game.n_players
    ends = game.value(np.array([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]))
    return float(ends[0] - ends[1])


def check_efficiency(
    result: ValuationResult, game: Game, *, rtol: float = 1e-9, atol: float = 1e-9
) -> None:
    """Raise ``ValueError`` unless ``sum(result.values)`` is ``v(N) - v(∅)`` within tolerance."""
    expected = total_value(game)
    total = float(np.sum(result.values))
    if not math.isclose(total, expected, rel_tol=rtol, abs_tol=atol):
        raise ValueError(
            f"values of {result.method} sum to {total!r}, but v(N) - v(∅) = {expected!r} "
            f"(rtol={rtol}, atol={atol})"
        )


def _check_players(game: Game) -> int:
    n = int(game.n_players)
    if n < 1:
        raise ValueError(f"the game must have at least 1 player; got n_players={n}")
    return n


def exact_shapley(game: Game) -> ValuationResult:
    """Exact Shapley values by enumerating all ``2^n`` coalitions, the empty one included.

    Each coalition ``S`` of size ``s`` with value ``v(S)`` adds ``w(s - 1) v(S)`` to its members
    and subtracts ``w(s) v(S)`` from the others, with ``w(s) = s! (n - s - 1)! / n!``, which
    regroups the sum over marginal contributions ``v(S ∪ {i}) - v(S)`` so each coalition is valued
    once. Coalitions are evaluated in chunks of :data:`EXACT_CHUNK` rows.

    Parameters
    ----------
    game : Game
        At most :data:`MAX_EXACT_PLAYERS` players.

    Returns
    -------
    ValuationResult
        Standard errors are zero; ``n_evaluations`` is ``2^n``.
    """
    start = time.perf_counter()
    n = _check_players(game)
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact_shapley enumerates 2^n coalitions and allows n <= {MAX_EXACT_PLAYERS}; "
            f"the game has {n} players: use permutation_shapley instead"
        )
    # 1 / (n * C(n-1, k)) = k! (n-1-k)! / n!; exact integers avoid overflowing factorials.
    weight = np.array([1.0 / (n * math.comb(n - 1, k)) for k in range(n)] + [0.0])
    weight_members = np.concatenate([[0.0], weight[:-1]])  # w(s - 1); no members when s = 0
    weight_others = weight  # w(s); no others when s = n
    bits = np.arange(n, dtype=np.int64)
    values = np.zeros(n)
    n_coalitions = 2**n
    for first in range(0, n_coalitions, EXACT_CHUNK):
        codes = np.arange(first, min(first + EXACT_CHUNK, n_coalitions), dtype=np.int64)
        coalitions = ((codes[:, None] >> bits) & 1).astype(bool)
        coalition_values = check_finite_values(game.value(coalitions), coalitions)
        size = coalitions.sum(axis=1)
        as_float = coalitions.astype(float)
        values += as_float.T @ (weight_members[size] * coalition_values)
        values -= (1.0 - as_float).T @ (weight_others[size] * coalition_values)
    return ValuationResult(
        values=values,
        stderr=np.zeros(n),
        n_evaluations=n_coalitions,
        seconds=time.perf_counter() - start,
        method=f"exact(n={n})",
    )


def _generic_prefix_values(game: Game, permutations: np.ndarray) -> np.ndarray:
    """Values ``(m, n + 1)`` of the ``n + 1`` prefixes of each permutation, via ``game.value``."""
    m, n = permutations.shape
    position = np.argsort(permutations, axis=1)  # position[p, i]: where player i stands
    # Prefix j holds the players standing before position j.
    coalitions = position[:, None, :] < np.arange(n + 1)[None, :, None]
    flat = coalitions.reshape(m * (n + 1), n)
    values = check_finite_values(np.asarray(game.value(flat), dtype=float), flat)
    return values.reshape(m, n + 1)


def _pair_budget(n: int, n_permutations: int | None, max_evaluations: int | None) -> int | None:
    """Antithetic pairs allowed by the count budgets; ``None`` when only time limits the run."""
    per_pair = 2 * (n + 1)
    limits = []
    if n_permutations is not None:
        if n_permutations < 2:
            raise ValueError(
                f"n_permutations must be at least 2 (one antithetic pair); got {n_permutations}"
            )
        limits.append(math.ceil(n_permutations / 2))
    if max_evaluations is not None:
        if max_evaluations < per_pair:
            raise ValueError(
                f"max_evaluations={max_evaluations} is too small for one antithetic pair of "
                f"permutations of {n} players: the minimum is 2*(n+1) = {per_pair} evaluations"
            )
        limits.append(max_evaluations // per_pair)
    return min(limits) if limits else None


def permutation_shapley(
    game: Game,
    *,
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seconds: float | None = None,
    rng: np.random.Generator | int | None = None,
    fast: bool = True,
) -> ValuationResult:
    """Shapley values by Monte Carlo over antithetic pairs of permutations.

    Each sample is a random permutation and its reverse; a player's sample is the mean of its two
    marginal contributions, which are negatively correlated, so pairs vary less than two
    independent permutations. Standard errors are over pairs. The marginals of one permutation
    telescope to ``v(N) - v(∅)``, so every sample, and the estimate, is efficient.

    Parameters
    ----------
    game : Game
        Any game; a :class:`CentroidGame` uses its ``O(n d)`` running-sum path unless ``fast``
        is off.
    n_permutations : int, optional
        Permutations to draw, rounded up to an even number (whole pairs).
    max_evaluations : int, optional
        Coalition values to spend; a pair costs ``2 (n + 1)`` (the minimum accepted).
    seconds : float, optional
        Stop after the first batch that ends past this wall-clock time (at least one batch runs).
    rng : numpy.random.Generator or int, optional
        Source of the permutations. The same seed gives the same values on either path.
    fast : bool, default True
        Use the game's prefix shortcut where it has one; off, every prefix goes through ``value``.

    Returns
    -------
    ValuationResult
        ``stderr`` is ``inf`` when only one pair was drawn.
    """
    start = time.perf_counter()
    n = _check_players(game)
    if n_permutations is None and max_evaluations is None and seconds is None:
        raise ValueError("give a budget: n_permutations, max_evaluations or seconds")
    max_pairs = _pair_budget(n, n_permutations, max_evaluations)
    generator = np.random.default_rng(rng)
    centroid = game if fast and isinstance(game, CentroidGame) else None
    batch_pairs = max(1, min(MAX_BATCH_PAIRS, BATCH_COALITIONS // (2 * (n + 1))))

    count = 0
    mean = np.zeros(n)
    squares = np.zeros(n)  # sum of squared deviations from the mean (Welford / Chan merge)
    while max_pairs is None or count < max_pairs:
        size = batch_pairs if max_pairs is None else min(batch_pairs, max_pairs - count)
        # argsort of uniforms draws the same permutations whatever the batch sizes, because the
        # uniforms come off the stream in order; rng.permuted gives no such guarantee.
        forward = np.argsort(generator.random((size, n)), axis=1)
        permutations = np.concatenate([forward, forward[:, ::-1]])
        if centroid is not None:
            prefix = centroid.prefix_values(permutations)
        else:
            prefix = _generic_prefix_values(game, permutations)
        by_position = np.diff(prefix, axis=1)
        marginals = np.take_along_axis(by_position, np.argsort(permutations, axis=1), axis=1)
        samples = (marginals[:size] + marginals[size:]) / 2

        batch_mean = samples.mean(axis=0)
        batch_squares = ((samples - batch_mean) ** 2).sum(axis=0)
        total = count + size
        delta = batch_mean - mean
        mean = mean + delta * size / total
        squares = squares + batch_squares + delta**2 * count * size / total
        count = total
        if seconds is not None and time.perf_counter() - start >= seconds:
            break

    path = "generic" if centroid is None else "centroid"
    stderr = np.sqrt(squares / (count - 1) / count) if count > 1 else np.full(n, np.inf)
    return ValuationResult(
        values=mean,
        stderr=stderr,
        n_evaluations=count * 2 * (n + 1),
        seconds=time.perf_counter() - start,
        method=f"permutation(pairs={count}, antithetic, path={path})",
        n_samples=count,
    )
