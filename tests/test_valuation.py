"""Shapley estimators against brute force, closed forms, efficiency and their error contracts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from crowdtune.valuation import (
    AdditiveGame,
    CentroidGame,
    Game,
    SymmetricVotingGame,
    UnanimityGame,
    ValuationResult,
    check_efficiency,
    exact_shapley,
    permutation_shapley,
    total_value,
)


def brute_force_shapley(game: Game) -> np.ndarray:
    """Shapley values by the definition: average marginal contribution over all n! orders."""
    n = game.n_players
    values = np.zeros(n)
    for order in itertools.permutations(range(n)):
        coalitions = np.zeros((n + 1, n), dtype=bool)
        for j, player in enumerate(order):
            coalitions[j + 1 :, player] = True
        prefix = game.value(coalitions)
        values[list(order)] += np.diff(prefix)
    return values / math.factorial(n)


def movielens_like_users(n: int, d: int = 19, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Genre-share vectors like MovieLens users' (non-negative, rows sum to 1) and an expert."""
    rng = np.random.default_rng(seed)
    users = rng.dirichlet(np.full(d, 0.5), size=n)
    expert = rng.dirichlet(np.full(d, 0.5))
    return users, expert


class NaNGame:
    """Finite everywhere except the coalition {1, 2}."""

    n_players = 4

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        values = coalitions.sum(axis=1).astype(float)
        target = np.array([False, True, True, False])
        values[(coalitions == target).all(axis=1)] = np.nan
        return values


@pytest.mark.parametrize("metric", ["l2", "l1", "dot", "cosine"])
@pytest.mark.parametrize("n", [1, 3, 6])
def test_exact_matches_brute_force_on_centroid_game(metric: str, n: int) -> None:
    users, expert = movielens_like_users(n, d=5, seed=n)
    game = CentroidGame(users, expert, metric=metric)
    result = exact_shapley(game)
    np.testing.assert_allclose(result.values, brute_force_shapley(game), rtol=1e-10, atol=1e-12)
    assert result.n_evaluations == 2**n
    np.testing.assert_array_equal(result.stderr, np.zeros(n))


def test_empty_coalition_value_matters() -> None:
    users, expert = movielens_like_users(7, d=4, seed=3)
    published = CentroidGame(users, expert)  # v(∅) = metric(0, expert)
    shifted = CentroidGame(users, expert, empty_value=published.empty_value - 1.0)
    for game in (published, shifted):
        np.testing.assert_allclose(
            exact_shapley(game).values, brute_force_shapley(game), atol=1e-12
        )
    # Lowering v(∅) by 1 raises each player's value by 1/n: it joins the empty coalition in 1/n
    # of the orders. An estimator that skips ∅ would not see the change.
    difference = exact_shapley(shifted).values - exact_shapley(published).values
    np.testing.assert_allclose(difference, np.full(7, 1.0 / 7), atol=1e-12)


@pytest.mark.parametrize(
    "game",
    [
        AdditiveGame(np.array([0.5, -1.0, 2.0, 0.0, 3.5]), constant=4.0),
        UnanimityGame(6, [1, 4]),
        SymmetricVotingGame(7),
        SymmetricVotingGame(8),
    ],
    ids=["additive", "unanimity", "voting-odd", "voting-even"],
)
def test_closed_form_games(game: AdditiveGame | UnanimityGame | SymmetricVotingGame) -> None:
    expected = game.shapley_values()
    np.testing.assert_allclose(brute_force_shapley(game), expected, atol=1e-12)
    exact = exact_shapley(game)
    np.testing.assert_allclose(exact.values, expected, atol=1e-12)
    check_efficiency(exact, game, rtol=1e-12, atol=1e-12)
    estimate = permutation_shapley(game, n_permutations=2000, rng=7)
    check_efficiency(estimate, game, rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(estimate.values - expected) <= 4 * estimate.stderr + 1e-9)


def test_additive_game_permutation_is_exact() -> None:
    game = AdditiveGame(np.array([1.0, -2.0, 3.0]), constant=10.0)
    result = permutation_shapley(game, n_permutations=2, rng=0)
    np.testing.assert_allclose(result.values, [1.0, -2.0, 3.0])
    np.testing.assert_allclose(result.stderr, 0.0, atol=1e-12)  # every marginal is the weight
    assert result.n_samples == 1
    assert result.n_evaluations == 2 * 4


def test_permutation_efficiency_holds_for_every_sample() -> None:
    # One pair at a time: each permutation's marginals telescope to v(N) - v(∅).
    users, expert = movielens_like_users(12, seed=5)
    game = CentroidGame(users, expert)
    for seed in range(5):
        for fast in (True, False):
            result = permutation_shapley(game, n_permutations=2, rng=seed, fast=fast)
            check_efficiency(result, game, rtol=1e-12, atol=1e-12)


def test_permutation_converges_to_exact_on_centroid_game() -> None:
    users, expert = movielens_like_users(10, seed=11)
    game = CentroidGame(users, expert)
    exact = exact_shapley(game)
    estimate = permutation_shapley(game, n_permutations=4000, rng=2024)
    assert estimate.n_samples == 2000
    assert np.all(np.abs(estimate.values - exact.values) <= 4 * estimate.stderr + 1e-9)
    # The bound must not hold merely because the errors are huge.
    assert np.max(estimate.stderr) < 0.05 * np.max(np.abs(exact.values))
    check_efficiency(estimate, game, rtol=1e-10)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_fast_centroid_path_equals_generic_path(metric: str) -> None:
    users, expert = movielens_like_users(15, seed=4)
    game = CentroidGame(users, expert, metric=metric)
    fast = permutation_shapley(game, n_permutations=600, rng=9, control=None, exact_positions=0)
    generic = permutation_shapley(game, n_permutations=600, rng=9, fast=False)
    assert "centroid" in fast.method and "generic" in generic.method
    np.testing.assert_allclose(fast.values, generic.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.stderr, generic.stderr, rtol=1e-6, atol=1e-12)
    assert fast.n_evaluations == generic.n_evaluations == 300 * 2 * 16


def test_same_seed_same_values_and_generator_accepted() -> None:
    users, expert = movielens_like_users(30, seed=1)
    game = CentroidGame(users, expert)
    first = permutation_shapley(game, n_permutations=100, rng=42)
    again = permutation_shapley(game, n_permutations=100, rng=42)
    np.testing.assert_array_equal(first.values, again.values)
    other = permutation_shapley(game, n_permutations=100, rng=43)
    assert not np.array_equal(first.values, other.values)
    # A Generator seeds the chunk streams from one draw: equal generators, equal values.
    by_generator = [
        permutation_shapley(game, n_permutations=100, rng=np.random.default_rng(7)).values
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*by_generator)


def test_budgets_pick_the_smallest_and_seconds_stops() -> None:
    game = AdditiveGame(np.arange(5.0))
    by_evaluations = permutation_shapley(game, n_permutations=100, max_evaluations=12 * 7, rng=0)
    assert by_evaluations.n_samples == 7
    assert by_evaluations.n_evaluations == 84
    timed = permutation_shapley(game, seconds=0.0, rng=0)
    assert timed.n_samples >= 1
    assert permutation_shapley(game, n_permutations=3, rng=0).n_samples == 2  # rounded up


def test_nan_game_raises_naming_the_coalition() -> None:
    with pytest.raises(ValueError, match=r"coalition of players \[1, 2\]"):
        exact_shapley(NaNGame())
    with pytest.raises(ValueError, match=r"coalition of players \[1, 2\]"):
        permutation_shapley(NaNGame(), n_permutations=200, rng=0)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_nan_centroid_prefix_raises_naming_the_coalition() -> None:
    users = np.array([[1.0, 0.0], [np.nan, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"users must be finite; users\[1, 0\] is nan"):
        CentroidGame(users, np.array([0.5, 0.5]))
    # A metric can still overflow: huge vectors make l2 infinite on some prefix.
    game = CentroidGame(np.array([[1.0, 0.0], [1e308, 1e308], [0.0, 1.0]]), np.zeros(2))
    with pytest.raises(ValueError, match=r"coalition of players \[.*1.*\]"):
        permutation_shapley(game, n_permutations=2, rng=0)
    with pytest.raises(ValueError, match=r"coalition of players \[.*1.*\]"):
        permutation_shapley(game, n_permutations=2, rng=0, control=None, exact_positions=0)


def test_exact_refuses_large_games() -> None:
    with pytest.raises(ValueError, match="permutation_shapley"):
        exact_shapley(AdditiveGame(np.ones(21)))


def test_too_small_budget_names_the_minimum() -> None:
    game = AdditiveGame(np.ones(9))
    with pytest.raises(ValueError, match=r"minimum is 2\*\(n\+1\) = 20"):
        permutation_shapley(game, max_evaluations=19)
    with pytest.raises(ValueError, match="at least 2"):
        permutation_shapley(game, n_permutations=1)
    with pytest.raises(ValueError, match="give a budget"):
        permutation_shapley(game)


def test_game_input_checks() -> None:
    with pytest.raises(ValueError, match=r"shape \(k, 3\)"):
        AdditiveGame(np.ones(3)).value(np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="boolean"):
        AdditiveGame(np.ones(3)).value(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expert must have shape \(2,\)"):
        CentroidGame(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="unknown metric 'cos'"):
        CentroidGame(np.ones((3, 2)), np.ones(2), metric="cos")
    assert isinstance(CentroidGame(np.ones((3, 2)), np.ones(2)), Game)


def test_total_value_and_efficiency_failure() -> None:
    game = AdditiveGame(np.array([1.0, 2.0]), constant=3.0)
    assert total_value(game) == pytest.approx(3.0)
    wrong = ValuationResult(
        values=np.array([1.0, 1.0]), stderr=np.zeros(2), n_evaluations=4, seconds=0.0, method="x"
    )
    with pytest.raises(ValueError, match="sum to 2.0"):
        check_efficiency(wrong, game)


def test_result_dataframe_and_shape_check() -> None:
    result = exact_shapley(UnanimityGame(3, [0, 2]))
    frame = result.to_dataframe()
    assert list(frame.columns) == ["player", "value", "stderr"]
    assert frame["player"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(frame["value"], [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        ValuationResult(
            values=np.ones(2), stderr=np.ones(3), n_evaluations=1, seconds=0.0, method="x"
        )
