"""Monte Carlo machinery: control variates, exact positions, stopping, truncation, backends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crowdtune.parallel import LocalBackend, get_backend
from crowdtune.valuation import (
    CentroidGame,
    check_efficiency,
    exact_shapley,
    permutation_shapley,
)
from crowdtune.valuation.controls import SizeLinearGame, centroid_control, centroid_pair_means
from crowdtune.valuation.estimators import GameError, truncated_shapley
from crowdtune.valuation.stopping import (
    MaxEvaluations,
    MaxPermutations,
    Progress,
    RelativeStandardError,
    TimeBudget,
    budget,
)


def crowd(n: int, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 5, (n, d)), rng.uniform(0, 5, d)


def test_size_linear_game_closed_form_matches_enumeration() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 9):
        game = SizeLinearGame(rng.normal(size=n), rng.normal(size=n + 1), rng.normal(size=n + 1))
        np.testing.assert_allclose(game.shapley_values(), exact_shapley(game).values, atol=1e-10)
        # position means: brute force over the k-subsets of the others
        for k in range(n):
            expected = []
            for i in range(n):
                others = [j for j in range(n) if j != i]
                gains = []
                for subset in itertools.combinations(others, k):
                    rows = np.zeros((2, n), dtype=bool)
                    rows[:, list(subset)] = True
                    rows[1, i] = True
                    low, high = game.value(rows)
                    gains.append(high - low)
                expected.append(np.mean(gains))
            np.testing.assert_allclose(game.position_means(k), expected, atol=1e-10)
        permutations = np.array([rng.permutation(n) for _ in range(4)])
        prefix = game.prefix_values(permutations)
        for p, order in enumerate(permutations):
            rows = np.zeros((n + 1, n), dtype=bool)
            for j in range(n):
                rows[j + 1 :, order[j]] = True
            np.testing.assert_allclose(prefix[p], game.value(rows), atol=1e-12)


@pytest.mark.parametrize("metric", ["l2", "l1", "dot", "cosine"])
def test_centroid_control_is_first_order_and_pair_means_are_exact(metric: str) -> None:
    users, expert = crowd(7, seed=1)
    game = CentroidGame(users, expert, metric=metric)
    control = centroid_control(game)
    assert control is not None
    full = np.ones((1, 7), dtype=bool)
    # Exact at the full coalition (the expansion point), and matches v(∅) by construction.
    np.testing.assert_allclose(control.value(full), game.value(full), rtol=1e-6)
    empty = np.zeros((1, 7), dtype=bool)
    np.testing.assert_allclose(control.value(empty), game.value(empty))
    if metric == "dot":  # a linear metric: the expansion is the game itself
        rows = np.random.default_rng(0).random((20, 7)) < 0.5
        rows[:, 0] = True
        np.testing.assert_allclose(control.value(rows), game.value(rows), rtol=1e-6)
    brute = [
        np.mean([game.value(np.isin(np.arange(7), [i, j])[None])[0] for j in range(7) if j != i])
        for i in range(7)
    ]
    np.testing.assert_allclose(centroid_pair_means(game, block_elements=10), brute, atol=1e-12)


@pytest.mark.parametrize("metric", ["l2", "l1", "dot", "cosine"])
def test_variance_reduced_permutation_is_unbiased_and_efficient(metric: str) -> None:
    users, expert = crowd(10, seed=2)
    game = CentroidGame(users, expert, metric=metric)
    exact = exact_shapley(game).values
    reduced = permutation_shapley(game, n_permutations=2000, rng=5)
    assert "control=linear" in reduced.method and "exact_positions=2" in reduced.method
    assert np.all(np.abs(reduced.values - exact) <= 4 * reduced.stderr + 1e-9)
    check_efficiency(reduced, game, rtol=1e-9, atol=1e-9)
    plain = permutation_shapley(game, n_permutations=2000, rng=5, control=None, exact_positions=0)
    # The reductions must pay: a smaller error than plain sampling on the same budget.
    assert np.abs(reduced.values - exact).max() < np.abs(plain.values - exact).max()
    assert reduced.n_evaluations == 11 + 45 + 1 + 1000 * 2 * 11


def test_exact_positions_cover_small_games_exactly() -> None:
    users, expert = crowd(4, seed=4)
    game = CentroidGame(users, expert)
    # n = 4: positions 0 and 1 exact, 2 and 3 sampled; n = 2: position 0 only (n // 2).
    result = permutation_shapley(game, n_permutations=4000, rng=1)
    np.testing.assert_allclose(
        result.values, exact_shapley(game).values, atol=5 * result.stderr.max()
    )
    two = CentroidGame(users[:2], expert)
    result = permutation_shapley(two, n_permutations=10, rng=1)
    assert "exact_positions=1" in result.method
    np.testing.assert_allclose(result.values, exact_shapley(two).values, atol=1e-9)


def test_generic_game_can_use_exact_positions() -> None:
    users, expert = crowd(8, seed=6)
    game = CentroidGame(users, expert)
    exact = exact_shapley(game).values
    result = permutation_shapley(game, n_permutations=3000, rng=2, fast=False, exact_positions=2)
    assert "path=generic" in result.method and "control=none" in result.method
    assert np.all(np.abs(result.values - exact) <= 4 * result.stderr + 1e-9)
    check_efficiency(result, game)


def test_stopping_rules_compose_and_cap() -> None:
    rule = MaxPermutations(10) | MaxEvaluations(1000)
    assert rule.max_pairs(Progress(0, 0, 0.0), 100) == 5
    assert rule.max_pairs(Progress(0, 0, 0.0), 500) == 2
    assert rule.max_pairs(Progress(4, 0, 0.0), 10) == 1
    assert (MaxPermutations(10) & TimeBudget(1.0)).max_pairs(Progress(0, 0, 0.0), 10) is None
    assert TimeBudget(1.0)(Progress(1, 1, 1.5)) and not TimeBudget(1.0)(Progress(1, 1, 0.5))
    rse = RelativeStandardError(0.1, min_pairs=2)
    values, stderr = np.array([1.0, -2.0]), np.array([0.05, 0.19])
    assert rse(Progress(2, 0, 0.0, values, stderr))
    assert not rse(Progress(1, 0, 0.0, values, stderr))  # too few pairs
    assert not rse(Progress(2, 0, 0.0, values, stderr * 2))
    assert repr(budget(n_permutations=4, seconds=2.0)) == "MaxPermutations(4) | TimeBudget(2.0)"
    with pytest.raises(ValueError, match="give a budget"):
        budget()
    with pytest.raises(ValueError, match="rtol must be positive"):
        RelativeStandardError(0.0)


def test_rtol_rule_stops_when_precise_enough() -> None:
    users, expert = crowd(30, seed=8)
    game = CentroidGame(users, expert)
    result = permutation_shapley(game, rtol=0.01, max_evaluations=10**8, rng=0)
    assert result.stderr.max() <= 0.01 * np.abs(result.values).max()
    assert result.n_evaluations < 10**8


def test_budget_error_counts_the_exact_positions() -> None:
    game = CentroidGame(*crowd(9, seed=1))
    # positions 0-1 cost 10 + 36, v(N) one more, then a pair 2 * 10.
    with pytest.raises(ValueError, match=r"minimum is 47 for the exact positions .* = 67"):
        permutation_shapley(game, max_evaluations=66)
    result = permutation_shapley(game, max_evaluations=67, rng=0)
    assert result.n_evaluations == 67 and result.n_samples == 1


class Saturating:
    """v(S) = min(|S|, 3) * 1.0 + tiny per-player terms: saturates after three players."""

    def __init__(self, n: int) -> None:
        self.n_players = n
        self.calls = 0

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        self.calls += len(coalitions)
        sizes = coalitions.sum(axis=1)
        return np.minimum(sizes, 3).astype(float) + 1e-4 * (coalitions @ np.arange(self.n_players))


def test_truncated_saves_evaluations_and_zero_tolerance_is_plain() -> None:
    game = Saturating(12)
    plain = permutation_shapley(game, n_permutations=200, rng=4)
    untruncated = truncated_shapley(game, tolerance=0.0, n_permutations=200, rng=4)
    np.testing.assert_allclose(untruncated.values, plain.values, atol=1e-12)
    # v(N) and v(∅) once up front, then the n non-empty prefixes of each permutation.
    assert untruncated.n_evaluations == 2 + 200 * 12
    assert plain.n_evaluations == 200 * 13
    truncated = truncated_shapley(game, tolerance=0.01, n_permutations=200, rng=4)
    assert truncated.n_evaluations < 0.5 * plain.n_evaluations
    exact = exact_shapley(game).values
    # The bias is bounded by what truncation cuts off (the tiny per-player terms).
    assert np.abs(truncated.values - exact).max() < 0.05
    assert "truncated(tolerance=0.01" in truncated.method


class Raising:
    n_players = 5

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        if (coalitions[:, 3] & coalitions[:, 1] & ~coalitions[:, 0]).any():
            bad = coalitions[:, 3] & coalitions[:, 1] & ~coalitions[:, 0]
            row = coalitions[bad][0]
            if row.sum() == 2:
                raise ZeroDivisionError("no data for {1, 3}")
        return coalitions.sum(axis=1).astype(float)


def test_raising_game_stops_naming_the_coalition_and_error() -> None:
    for estimate in (
        lambda: exact_shapley(Raising()),
        lambda: permutation_shapley(Raising(), n_permutations=400, rng=0),
        lambda: truncated_shapley(Raising(), n_permutations=400, rng=0),
    ):
        with pytest.raises(
            GameError, match=r"players \[1, 3\]: ZeroDivisionError: no data"
        ) as info:
            estimate()
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_same_values_on_every_local_backend() -> None:
    game = CentroidGame(*crowd(40, seed=3))
    serial = permutation_shapley(game, n_permutations=3000, rng=11)
    threads = permutation_shapley(
        game, n_permutations=3000, rng=11, backend=LocalBackend(2, "thread")
    )
    processes = permutation_shapley(
        game, n_permutations=3000, rng=11, backend=get_backend(workers=2)
    )
    np.testing.assert_array_equal(serial.values, threads.values)
    np.testing.assert_array_equal(serial.values, processes.values)
    assert serial.n_evaluations == threads.n_evaluations == processes.n_evaluations
    assert "workers=2" in threads.method


def test_backend_choices() -> None:
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        get_backend("spark")
    with pytest.raises(ValueError, match="--address only applies"):
        get_backend("local", address="ray://x:1")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        LocalBackend(0)
