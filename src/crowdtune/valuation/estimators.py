"""Shapley value estimators: exact enumeration, permutation Monte Carlo, truncated Monte Carlo.

Each takes any :class:`~crowdtune.valuation.games.Game` and returns a
:class:`~crowdtune.valuation.result.ValuationResult`. The value of the empty coalition counts:
a player's marginal contribution when it joins nobody is ``v({i}) - v(∅)``, so the values add up
to ``v(N) - v(∅)`` (efficiency), which :func:`check_efficiency` verifies.

Monte Carlo estimators are a sampler (antithetic pairs of permutations, in seeded chunks), a
:mod:`stopping rule <crowdtune.valuation.stopping>` and a :mod:`backend <crowdtune.parallel>`
that runs the chunks; chunk ``c`` draws from ``SeedSequence(seed, spawn_key=(c,))`` and chunks
merge in order, so a seed gives the same values on every backend and worker count.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdtune.parallel import Backend, LocalBackend
from crowdtune.valuation.controls import SizeLinearGame, centroid_control, centroid_pair_means
from crowdtune.valuation.games import (
    CentroidGame,
    Game,
    NonFiniteValueError,
    check_finite_values,
)
from crowdtune.valuation.result import ValuationResult
from crowdtune.valuation.stopping import Progress, StoppingRule, budget

#: Largest game :func:`exact_shapley` enumerates; 2^20 coalitions take about a second.
MAX_EXACT_PLAYERS = 20
#: Coalitions evaluated per call to ``game.value`` during enumeration, to bound memory.
EXACT_CHUNK = 2**16
#: Coalitions (permutations × (n + 1)) of one vectorised step of a sampling chunk.
BATCH_COALITIONS = 2**16
#: Coalitions of one chunk, the unit of work a backend runs and of seeding.
CHUNK_COALITIONS = 2**19


class GameError(ValueError):
    """A game's value function raised; the message names the coalition and the error."""


def evaluate(game: Game, coalitions: np.ndarray) -> np.ndarray:
    """``game.value(coalitions)`` as floats, stopping on the first coalition that fails.

    A value that is NaN or infinite raises ``ValueError`` naming the coalition. When the game
    raises, the coalitions are retried one by one to find the first that fails, and a
    :class:`GameError` names its players and the original error (chained).
    """
    try:
        values = np.asarray(game.value(coalitions), dtype=float)
    except (GameError, NonFiniteValueError):
        raise
    except Exception as error:
        if len(coalitions) <= 1:
            culprit = coalitions[0] if len(coalitions) else np.zeros(0, dtype=bool)
            raise _game_error(culprit, error) from error
        for row in coalitions:
            try:
                game.value(row[None, :])
            except Exception as inner:
                raise _game_error(row, inner) from inner
        raise GameError(
            f"game value failed on a batch of {len(coalitions)} coalitions, though each one "
            f"alone succeeds: {type(error).__name__}: {error}"
        ) from error
    if values.shape != (len(coalitions),):
        raise ValueError(
            f"game.value must return one value per coalition, shape ({len(coalitions)},); "
            f"got shape {values.shape}"
        )
    return check_finite_values(values, coalitions)


def _game_error(coalition: np.ndarray, error: Exception) -> Exception:
    if isinstance(error, (GameError, NonFiniteValueError)):
        return error
    members = np.flatnonzero(coalition).tolist()
    return GameError(
        f"game value failed for the coalition of players {members}: {type(error).__name__}: {error}"
    )


def total_value(game: Game) -> float:
    """``v(N) - v(∅)``: what the Shapley values of ``game`` must add up to."""
    n = game.n_players
    ends = evaluate(game, np.array([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]))
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
            f"the game has {n} players: use permutation_shapley (method 'permutation') instead"
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
        coalition_values = evaluate(game, coalitions)
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


# --- sampling -------------------------------------------------------------------------------


def _prefix_values(game: Game, permutations: np.ndarray, fast: bool) -> np.ndarray:
    """Values ``(m, n + 1)`` of the ``n + 1`` prefixes of each permutation."""
    if fast and isinstance(game, CentroidGame):
        return game.prefix_values(permutations)
    m, n = permutations.shape
    position = np.argsort(permutations, axis=1)  # position[p, i]: where player i stands
    # Prefix j holds the players standing before position j.
    coalitions = position[:, None, :] < np.arange(n + 1)[None, :, None]
    flat = coalitions.reshape(m * (n + 1), n)
    return evaluate(game, flat).reshape(m, n + 1)


def _truncated_prefix_values(
    game: Game, permutations: np.ndarray, ends: tuple[float, float], tolerance: float
) -> tuple[np.ndarray, int]:
    """Prefix values that stop growing once a prefix is within ``tolerance`` of ``v(N)``.

    Prefixes are evaluated position by position across the permutations still running; after a
    permutation's prefix comes within ``tolerance * |v(N) - v(∅)|`` of ``v(N)``, its remaining
    prefixes take that value (marginals of zero) without being evaluated. Returns the values and
    the evaluations spent.
    """
    full, empty = ends
    m, n = permutations.shape
    values = np.empty((m, n + 1))
    values[:, 0] = empty
    members = np.zeros((m, n), dtype=bool)
    running = np.ones(m, dtype=bool)
    rows = np.arange(m)
    spent = 0
    limit = tolerance * abs(full - empty)
    for j in range(1, n + 1):
        members[rows, permutations[:, j - 1]] = True
        values[:, j] = values[:, j - 1]
        active = np.flatnonzero(running)
        if active.size == 0:
            continue
        values[active, j] = evaluate(game, members[active])
        spent += active.size
        running[active] = np.abs(full - values[active, j]) >= limit
    return values, spent


@dataclass(frozen=True)
class _Sampler:
    """What every chunk needs: the game, its control, the skipped positions, the seed."""

    game: Any
    control: SizeLinearGame | None
    skip: int
    entropy: int
    fast: bool
    truncation: float | None
    ends: tuple[float, float]


def _sample_chunk(sampler: _Sampler, chunk: int, pairs: int) -> tuple[np.ndarray, ...]:
    """Per-player sums, squared sums and counts of the marginals of ``pairs`` antithetic pairs.

    Only positions ``>= sampler.skip`` are kept (the earlier ones are computed exactly). With a
    control, the marginals are those of ``game - control``. Returns sums, squares, counts and
    the number of evaluations as a one-element array.
    """
    game = sampler.game
    n = game.n_players
    rng = np.random.default_rng(np.random.SeedSequence(sampler.entropy, spawn_key=(chunk,)))
    sums, squares, counts = np.zeros(n), np.zeros(n), np.zeros(n)
    spent = 0
    step = max(1, BATCH_COALITIONS // (2 * (n + 1)))
    for first in range(0, pairs, step):
        size = min(step, pairs - first)
        # argsort of uniforms takes the numbers off the stream in order, so the permutations do
        # not depend on the step size; rng.permuted gives no such guarantee.
        forward = np.argsort(rng.random((size, n)), axis=1)
        permutations = np.concatenate([forward, forward[:, ::-1]])
        if sampler.truncation is not None:
            prefix, used = _truncated_prefix_values(
                game, permutations, sampler.ends, sampler.truncation
            )
            spent += used
        else:
            prefix = _prefix_values(game, permutations, sampler.fast)
            spent += prefix.size
        if sampler.control is not None:
            prefix = prefix - sampler.control.prefix_values(permutations)
        marginals = np.diff(prefix, axis=1)[:, sampler.skip :].ravel()
        players = permutations[:, sampler.skip :].ravel()
        sums += np.bincount(players, weights=marginals, minlength=n)
        squares += np.bincount(players, weights=marginals**2, minlength=n)
        counts += np.bincount(players, minlength=n)
    return sums, squares, counts, np.array([spent])


def _entropy(rng: np.random.Generator | int | None) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    if rng is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    return int(rng)


def _exact_positions(
    game: Game, control: SizeLinearGame | None, positions: int, fast: bool
) -> tuple[np.ndarray, int]:
    """Sum over positions ``k < positions`` of each player's mean marginal at ``k`` (exact),
    minus the control's; and the evaluations spent (the empty coalition and singletons for
    ``k = 0``, every pair for ``k = 1``)."""
    n = game.n_players
    total = np.zeros(n)
    if positions == 0:
        return total, 0
    coalitions = np.vstack([np.zeros((1, n), dtype=bool), np.eye(n, dtype=bool)])
    values = evaluate(game, coalitions)
    empty, single = values[0], values[1:]
    total += single - empty
    spent = n + 1
    if positions >= 2:
        if fast and isinstance(game, CentroidGame):
            pair_means = centroid_pair_means(game)
            bad = np.flatnonzero(~np.isfinite(pair_means))
            if len(bad):  # evaluate that player's pairs, to name the culprit the usual way
                coalitions = np.eye(n, dtype=bool)
                coalitions[:, bad[0]] = True
                evaluate(game, np.delete(coalitions, bad[0], axis=0))
        else:
            first, second = np.triu_indices(n, k=1)
            coalitions = np.zeros((len(first), n), dtype=bool)
            coalitions[np.arange(len(first)), first] = True
            coalitions[np.arange(len(first)), second] = True
            pair = np.zeros((n, n))
            pair[first, second] = pair[second, first] = evaluate(game, coalitions)
            pair_means = pair.sum(axis=1) / (n - 1)
        spent += n * (n - 1) // 2
        total += pair_means - (single.sum() - single) / (n - 1)
    if control is not None:
        total -= sum(control.position_means(k) for k in range(positions))
    return total, spent


def _sample(
    game: Game,
    *,
    rule: StoppingRule,
    rng: np.random.Generator | int | None,
    fast: bool,
    control: SizeLinearGame | None,
    positions: int,
    truncation: float | None,
    backend: Backend | None,
    method: str,
    settings: str,
    start: float,
) -> ValuationResult:
    """The Monte Carlo core shared by :func:`permutation_shapley` and :func:`truncated_shapley`.

    ``values = control Shapley + (1/n) Σ_{k<positions} exact residual means
    + ((n - positions)/n) × mean of the residual marginals sampled at positions >= positions``.
    """
    n = game.n_players
    backend = backend or LocalBackend(workers=1)
    per_pair = 2 * (n + 1)
    need_ends = truncation is not None or control is not None or positions > 0
    # Check the budget before spending anything: the exact positions cost n + 1 (k = 0) and
    # n (n - 1) / 2 (k = 1) evaluations, v(N) one more (v(∅) too without exact positions).
    planned = (n + 1 if positions else 0) + (n * (n - 1) // 2 if positions >= 2 else 0)
    planned += (1 if positions else 2) if need_ends else 0
    rule.check(n, per_pair, planned)
    exact, spent = _exact_positions(game, control, positions, fast)
    ends = np.zeros(2)
    if need_ends:
        ends = evaluate(game, np.array([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]))
        spent += 1 if positions else 2
    sampler = _Sampler(
        game, control, positions, _entropy(rng), fast, truncation, (float(ends[0]), float(ends[1]))
    )
    chunk_pairs = max(1, CHUNK_COALITIONS // per_pair)
    sums, squares, counts = np.zeros(n), np.zeros(n), np.zeros(n)
    pairs = chunk = 0
    sampled = n > positions

    def estimate() -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
            variance = (squares - counts * mean**2) / (counts - 1)
            stderr = np.sqrt(np.maximum(variance, 0.0) / counts)
        share = (n - positions) / n
        values = exact / n + share * np.where(counts > 0, mean, 0.0)
        stderr = np.where(counts > 1, share * stderr, np.inf)
        if control is not None:
            values = values + control.shapley_values()
        return values, stderr

    while sampled:
        progress = Progress(pairs, spent, time.perf_counter() - start)
        cap = rule.max_pairs(progress, per_pair)
        if cap is not None and cap <= 0:
            break
        sizes: list[int] = []
        for _ in range(backend.workers):
            left = chunk_pairs if cap is None else min(chunk_pairs, cap - sum(sizes))
            if left > 0:
                sizes.append(left)
        tasks = [(sampler, chunk + i, size) for i, size in enumerate(sizes)]
        for part_sums, part_squares, part_counts, part_spent in backend.map(_sample_chunk, tasks):
            sums += part_sums
            squares += part_squares
            counts += part_counts
            spent += int(part_spent[0])
        chunk += len(sizes)
        pairs += sum(sizes)
        values, stderr = estimate()
        if rule(Progress(pairs, spent, time.perf_counter() - start, values, stderr)):
            break

    values, stderr = estimate()
    if not sampled:
        stderr = np.zeros(n)
    if control is not None or positions:
        # Reweighting strata and adding the control keep the estimate unbiased but not exactly
        # efficient; project onto Σφ = v(N) - v(∅), moving noisier players more (the
        # variance-weighted least-squares projection).
        gap = values.sum() - (ends[0] - ends[1])
        weights = np.where(np.isfinite(stderr), stderr**2, 0.0)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(n, 1.0 / n)
        values = values - weights * gap
    return ValuationResult(
        values=values,
        stderr=stderr,
        n_evaluations=spent,
        seconds=time.perf_counter() - start,
        method=f"{method}({settings}, pairs={pairs}, {describe(backend)})",
        n_samples=pairs,
    )


def describe(backend: Backend) -> str:
    """The backend as it appears in a result's ``method``."""
    return f"backend={backend.name}, workers={backend.workers}"


def _rule(
    stop: StoppingRule | None,
    n_permutations: int | None,
    max_evaluations: int | None,
    seconds: float | None,
    rtol: float | None,
) -> StoppingRule:
    """``stop`` and the budgets combined by "first reached"; either alone when the other is
    missing (no rule at all raises, naming the budgets)."""
    budgets = (n_permutations, max_evaluations, seconds, rtol)
    if stop is not None and budgets == (None, None, None, None):
        return stop
    rule = budget(
        n_permutations=n_permutations, max_evaluations=max_evaluations, seconds=seconds, rtol=rtol
    )
    return rule if stop is None else stop | rule


def permutation_shapley(
    game: Game,
    *,
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seconds: float | None = None,
    rtol: float | None = None,
    stop: StoppingRule | None = None,
    rng: np.random.Generator | int | None = None,
    fast: bool = True,
    control: SizeLinearGame | str | None = "auto",
    exact_positions: int | str = "auto",
    backend: Backend | None = None,
) -> ValuationResult:
    """Shapley values by Monte Carlo over antithetic pairs of permutations.

    Each sample is a random permutation and its reverse, whose marginals are negatively
    correlated. Two variance reductions apply to games that support them (on by default for a
    :class:`CentroidGame`):

    - a **control variate**: the first-order expansion of the game
      (:func:`~crowdtune.valuation.controls.centroid_control`), whose Shapley values are exact;
      the permutations only estimate the small remainder;
    - **exact positions**: a player's mean marginal when it joins 0 others (``v({i}) - v(∅)``)
      or 1 other (the mean over pairs) is computed exactly, with ``n + 1`` and ``n (n - 1) / 2``
      evaluations; these early positions carry most of the sampling noise.

    Without either, every sample is efficient (its marginals telescope to ``v(N) - v(∅)``);
    with them the estimate is projected onto efficiency, moving noisier players more.

    Parameters
    ----------
    game : Game
    n_permutations, max_evaluations, seconds, rtol : optional
        Budgets; the first reached stops (see :func:`crowdtune.valuation.stopping.budget`).
        ``max_evaluations`` counts the exact positions too; a pair costs ``2 (n + 1)``.
    stop : StoppingRule, optional
        Any rule, e.g. ``MaxEvaluations(10**6) | RelativeStandardError(0.01)``; combined with
        the budgets above by "first reached".
    rng : numpy.random.Generator or int, optional
        Seed of the chunk streams. The same int gives the same values on every backend.
    fast : bool, default True
        Use a :class:`CentroidGame`'s ``O(n d)`` running-sum prefix values; off, every prefix goes
        through ``value`` (and no variance reduction is on by default).
    control : "auto", SizeLinearGame or None
        The control game; ``"auto"`` builds it for a :class:`CentroidGame` when ``fast``.
    exact_positions : "auto", 0, 1 or 2
        Early positions computed exactly; ``"auto"`` is 2 for a :class:`CentroidGame` when
        ``fast`` (its pair values cost ``O(n^2 d)``), else 0. Capped at ``n // 2`` so every pair
        of permutations samples every player.
    backend : Backend, optional
        Where chunks run (:mod:`crowdtune.parallel`); default: this thread.

    Returns
    -------
    ValuationResult
        ``stderr`` is the standard error over the sampled marginals (conservative for antithetic
        pairs; ``inf`` for a player sampled fewer than twice).
    """
    start = time.perf_counter()
    n = _check_players(game)
    rule = _rule(stop, n_permutations, max_evaluations, seconds, rtol)
    centroid = fast and isinstance(game, CentroidGame)
    if isinstance(control, str):
        if control != "auto":
            raise ValueError(f"control must be 'auto', None or a SizeLinearGame; got {control!r}")
        control = centroid_control(game) if centroid else None  # type: ignore[arg-type]
    if exact_positions == "auto":
        positions = 2 if centroid else 0
    elif exact_positions in (0, 1, 2):
        positions = int(exact_positions)
    else:
        raise ValueError(f"exact_positions must be 'auto', 0, 1 or 2; got {exact_positions!r}")
    positions = min(positions, n // 2)
    path = "centroid" if centroid else "generic"
    settings = f"antithetic, path={path}, control={'linear' if control else 'none'}, "
    settings += f"exact_positions={positions}"
    return _sample(
        game,
        rule=rule,
        rng=rng,
        fast=fast,
        control=control,
        positions=positions,
        truncation=None,
        backend=backend,
        method="permutation",
        settings=settings,
        start=start,
    )


def truncated_shapley(
    game: Game,
    *,
    tolerance: float = 0.01,
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seconds: float | None = None,
    rtol: float | None = None,
    stop: StoppingRule | None = None,
    rng: np.random.Generator | int | None = None,
    backend: Backend | None = None,
) -> ValuationResult:
    """Truncated Monte Carlo Shapley (Ghorbani & Zou's Data Shapley) for expensive games.

    Like :func:`permutation_shapley` without variance reductions, but each permutation's prefixes
    are evaluated in order and the scan stops once a prefix is within ``tolerance`` × ``|v(N) -
    v(∅)|`` of ``v(N)``: the remaining players get a marginal of zero, unevaluated. This trades a
    small bias for far fewer evaluations when the value saturates (a model that has enough data).
    ``tolerance=0`` never truncates and equals the plain estimator on the same seed.
    """
    start = time.perf_counter()
    _check_players(game)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be non-negative; got {tolerance}")
    return _sample(
        game,
        rule=_rule(stop, n_permutations, max_evaluations, seconds, rtol),
        rng=rng,
        fast=False,
        control=None,
        positions=0,
        truncation=tolerance,
        backend=backend,
        method="truncated",
        settings=f"tolerance={tolerance}, antithetic",
        start=start,
    )
