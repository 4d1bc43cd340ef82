"""Tests for crowdtune.crowd.grouping and the group centroids of the simulation's round engine
(crowdtune.crowd.simulation.rounds)."""

from __future__ import annotations

import numpy as np
import pytest

from crowdtune.crowd.grouping import (
    RoundRandomness,
    assign,
    explore_probability,
    get_strategy,
    interleave_positions,
    interleaved_groups,
    make_epsilon_greedy,
    random_groups,
    split_positions,
)
from crowdtune.crowd.simulation.rounds import group_centroids

SIZES = [(n, g) for n in range(1, 14) for g in range(1, n + 1)]


def draws(rng: np.random.Generator, n_runs: int, n_users: int, explore: float) -> RoundRandomness:
    return RoundRandomness(rng.random((n_runs, n_users)), np.full(n_runs, explore))


def members(groups: np.ndarray, g: int) -> list[int]:
    return np.flatnonzero(groups == g).tolist()


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_users", "n_groups"), SIZES)
def test_split_positions_matches_array_split(n_users: int, n_groups: int) -> None:
    expected = np.concatenate(
        [
            np.full(len(piece), g)
            for g, piece in enumerate(np.array_split(np.arange(n_users), n_groups))
        ]
    )
    np.testing.assert_array_equal(split_positions(n_users, n_groups), expected)


def test_interleave_positions_deals_each_half_round_robin() -> None:
    # N=10: bottom half positions 0-4, top half 5-9, each dealt 0,1,2,3,0.
    np.testing.assert_array_equal(interleave_positions(10, 4), [0, 1, 2, 3, 0, 0, 1, 2, 3, 0])
    # Odd N: the bottom half is the n // 2 lowest, the top half one longer.
    np.testing.assert_array_equal(interleave_positions(7, 3), [0, 1, 2, 0, 1, 2, 0])


def test_assign_puts_each_user_in_the_group_of_its_position() -> None:
    order = np.array([[2, 0, 3, 1]])
    np.testing.assert_array_equal(assign(order, np.array([0, 0, 1, 1])), [[0, 1, 0, 1]])


# --------------------------------------------------------------------------------------------
# random
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_users", "n_groups"), [(7, 2), (10, 4), (12, 5), (5, 5), (9, 1)])
def test_random_groups_cut_the_key_permutation_as_array_split(n_users: int, n_groups: int) -> None:
    rng = np.random.default_rng(n_users * 10 + n_groups)
    d = draws(rng, 6, n_users, 0.0)
    groups = random_groups(np.ones((6, n_users)), d, n_groups, 0, 10)
    assert groups.shape == (6, n_users)
    expected_sizes = [len(p) for p in np.array_split(np.arange(n_users), n_groups)]
    for run in range(6):
        pieces = np.array_split(np.argsort(d.keys[run]), n_groups)
        for g, piece in enumerate(pieces):
            assert members(groups[run], g) == sorted(piece.tolist())
        np.testing.assert_array_equal(np.bincount(groups[run], minlength=n_groups), expected_sizes)


def test_random_groups_ignore_points() -> None:
    d = draws(np.random.default_rng(1), 3, 8, 0.0)
    points = np.random.default_rng(2).normal(size=(3, 8))
    np.testing.assert_array_equal(
        random_groups(points, d, 3, 0, 10), random_groups(np.ones((3, 8)), d, 3, 0, 10)
    )


def test_random_groups_are_uniform_over_assignments() -> None:
    # Each user lands in each group with frequency size / N.
    rng = np.random.default_rng(3)
    d = draws(rng, 20000, 5, 0.0)
    groups = random_groups(np.ones((20000, 5)), d, 2, 0, 10)
    share_in_first = (groups == 0).mean(axis=0)
    np.testing.assert_allclose(share_in_first, 3 / 5, atol=0.02)


# --------------------------------------------------------------------------------------------
# epsilon-greedy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "floor", "t", "n_rounds", "expected"),
    [
        ("linear", 0.4, 0, 100, 1.0),
        ("linear", 0.4, 30, 100, 0.7),
        ("linear", 0.4, 60, 100, 0.4),
        ("linear", 0.4, 99, 100, 0.4),
        ("linear", 0.0, 99, 100, 0.01),
        ("exponential", 0.0, 0, 100, 1.0),
        ("exponential", 0.0, 50, 100, float(np.exp(-1.5))),
        ("exponential", 0.4, 50, 100, 0.4),
        ("exponential", 0.1, 10, 100, float(np.exp(-0.3))),
        ("constant", 0.4, 0, 100, 0.4),
        ("constant", 0.25, 80, 100, 0.25),
    ],
)
def test_explore_probability_schedules(
    schedule: str, floor: float, t: int, n_rounds: int, expected: float
) -> None:
    assert explore_probability(schedule, floor, t, n_rounds) == pytest.approx(expected)


def test_explore_probability_rejects_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown explore schedule 'step'; choose one of: linear"):
        explore_probability("step", 0.4, 0, 10)
    with pytest.raises(ValueError, match="choose one of: linear, exponential, constant"):
        make_epsilon_greedy(0.4, "step")


def test_epsilon_greedy_exploit_puts_highest_points_in_last_group() -> None:
    rng = np.random.default_rng(4)
    points = rng.permutation(np.arange(10.0))[None].repeat(2, axis=0)
    points[1] = rng.permutation(points[1])
    strategy = make_epsilon_greedy(floor=0.4)
    groups = strategy(points, draws(rng, 2, 10, explore=0.99), 3, 90, 100)  # p = 0.4 < 0.99
    for run in range(2):
        ascending = np.argsort(points[run])
        assert members(groups[run], 2) == sorted(ascending[-3:].tolist())
        assert members(groups[run], 1) == sorted(ascending[4:7].tolist())
        assert members(groups[run], 0) == sorted(ascending[:4].tolist())


def test_epsilon_greedy_exploit_breaks_ties_by_user_index() -> None:
    points = np.array([[2.0, 1.0, 2.0, 1.0, 2.0, 1.0]])
    groups = make_epsilon_greedy(0.0)(points, draws(np.random.default_rng(0), 1, 6, 0.99), 2, 9, 10)
    np.testing.assert_array_equal(groups, [[1, 0, 1, 0, 1, 0]])


def test_epsilon_greedy_explores_exactly_when_coin_is_below_probability() -> None:
    rng = np.random.default_rng(5)
    points = rng.normal(size=(1, 9))
    keys = rng.random((1, 9))
    strategy = make_epsilon_greedy(floor=0.4, schedule="linear")
    at_random = random_groups(points, RoundRandomness(keys, np.zeros(1)), 3, 0, 10)
    by_points = assign(np.argsort(points, axis=1), split_positions(9, 3))
    assert not np.array_equal(at_random, by_points)
    # Round 3 of 10: p = 0.7.
    below = strategy(points, RoundRandomness(keys, np.array([0.6999])), 3, 3, 10)
    above = strategy(points, RoundRandomness(keys, np.array([0.7001])), 3, 3, 10)
    np.testing.assert_array_equal(below, at_random)
    np.testing.assert_array_equal(above, by_points)
    # Late rounds: the floor keeps exploring below 0.4.
    np.testing.assert_array_equal(
        strategy(points, RoundRandomness(keys, np.array([0.39])), 3, 9, 10), at_random
    )


def test_epsilon_greedy_decides_per_run() -> None:
    rng = np.random.default_rng(6)
    points = rng.normal(size=(2, 8))
    keys = rng.random((2, 8))
    groups = make_epsilon_greedy(0.4)(points, RoundRandomness(keys, np.array([0.1, 0.9])), 2, 8, 10)
    np.testing.assert_array_equal(
        groups[0], random_groups(points, RoundRandomness(keys, np.zeros(2)), 2, 0, 1)[0]
    )
    np.testing.assert_array_equal(
        groups[1], assign(np.argsort(points[1:]), split_positions(8, 2))[0]
    )


# --------------------------------------------------------------------------------------------
# interleaved
# --------------------------------------------------------------------------------------------


def test_interleaved_sizes_and_half_counts_for_ten_users_four_groups() -> None:
    rng = np.random.default_rng(7)
    points = rng.permutation(np.arange(10.0))[None]
    groups = interleaved_groups(points, draws(rng, 1, 10, 0.0), 4, 0, 10)[0]
    bottom = set(np.argsort(points[0])[:5].tolist())
    np.testing.assert_array_equal(np.bincount(groups, minlength=4), [4, 2, 2, 2])
    from_bottom = [sum(u in bottom for u in members(groups, g)) for g in range(4)]
    assert from_bottom == [2, 1, 1, 1]


@pytest.mark.parametrize(("n_users", "n_groups"), [(n, g) for n, g in SIZES if n >= 2])
def test_interleaved_deals_each_shuffled_half_round_robin(n_users: int, n_groups: int) -> None:
    rng = np.random.default_rng(n_users * 100 + n_groups)
    points = rng.normal(size=(3, n_users))
    d = draws(rng, 3, n_users, 0.0)
    groups = interleaved_groups(points, d, n_groups, 0, 10)
    mid = n_users // 2
    for run in range(3):
        ascending = np.argsort(points[run]).tolist()
        bottom = sorted(ascending[:mid], key=lambda u: d.keys[run, u])
        top = sorted(ascending[mid:], key=lambda u: d.keys[run, u])
        for g in range(n_groups):
            assert members(groups[run], g) == sorted(bottom[g::n_groups] + top[g::n_groups])
            assert sum(u in bottom for u in members(groups[run], g)) == len(range(g, mid, n_groups))


def test_interleaved_shuffle_depends_on_keys_but_halves_do_not() -> None:
    points = np.arange(8.0)[None]
    rng = np.random.default_rng(8)
    seen = set()
    for _ in range(30):
        groups = interleaved_groups(points, draws(rng, 1, 8, 0.0), 2, 0, 10)[0]
        # Each group always gets two of the bottom four and two of the top four.
        for g in range(2):
            ids = members(groups, g)
            assert sum(u < 4 for u in ids) == 2
        seen.add(tuple(groups))
    assert len(seen) > 5


def test_interleaved_with_more_groups_than_half_leaves_a_group_empty() -> None:
    groups = interleaved_groups(
        np.ones((1, 5)), draws(np.random.default_rng(0), 1, 5, 0.0), 4, 0, 1
    )
    np.testing.assert_array_equal(np.bincount(groups[0], minlength=4), [2, 2, 1, 0])


def test_get_strategy_returns_the_named_strategy() -> None:
    rng = np.random.default_rng(9)
    points = rng.normal(size=(2, 7))
    d = draws(rng, 2, 7, 0.0)
    np.testing.assert_array_equal(
        get_strategy("random")(points, d, 3, 0, 5), random_groups(points, d, 3, 0, 5)
    )
    np.testing.assert_array_equal(
        get_strategy("interleaved")(points, d, 3, 0, 5), interleaved_groups(points, d, 3, 0, 5)
    )
    greedy = get_strategy("epsilon-greedy", floor=0.0, schedule="constant")
    exploit = greedy(points, RoundRandomness(d.keys, np.full(2, 0.5)), 3, 0, 5)
    np.testing.assert_array_equal(
        exploit, assign(np.argsort(points, axis=1), split_positions(7, 3))
    )


# --------------------------------------------------------------------------------------------
# group_centroids
# --------------------------------------------------------------------------------------------


def brute_centroids(users, groups, weights, n_groups):
    n_runs, _, n_dims = users.shape
    out = np.full((n_runs, n_groups, n_dims), np.nan)
    sizes = np.zeros((n_runs, n_groups))
    for b in range(n_runs):
        for g in range(n_groups):
            ids = [u for u in range(users.shape[1]) if groups[b, u] == g]
            sizes[b, g] = len(ids)
            if not ids:
                continue
            w = [weights[b, u] for u in ids]
            if sum(w) <= 0:
                w = [1.0] * len(ids)
            out[b, g] = sum(wi * users[b, u] for wi, u in zip(w, ids, strict=True)) / sum(w)
    return out, sizes


def test_group_centroids_match_brute_force() -> None:
    rng = np.random.default_rng(10)
    users = rng.normal(size=(4, 9, 3))
    groups = rng.integers(0, 3, size=(4, 9))
    weights = rng.uniform(0.0, 3.0, size=(4, 9))
    got, sizes = group_centroids(users, groups, weights, 3)
    expected, expected_sizes = brute_centroids(users, groups, weights, 3)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_array_equal(sizes, expected_sizes)


def test_group_centroids_zero_weights_fall_back_to_mean_and_empty_group_is_nan() -> None:
    users = np.arange(24.0).reshape(2, 4, 3)
    groups = np.array([[0, 0, 1, 1], [0, 0, 0, 2]])
    weights = np.array([[0.0, 0.0, 1.0, 3.0], [0.0, 4.0, 0.0, 0.0]])
    got, sizes = group_centroids(users, groups, weights, 3)
    expected, expected_sizes = brute_centroids(users, groups, weights, 3)
    np.testing.assert_allclose(got, expected)  # NaN positions must agree too
    np.testing.assert_array_equal(sizes, expected_sizes)
    np.testing.assert_allclose(got[0, 0], users[0, :2].mean(axis=0))  # all-zero: plain mean
    np.testing.assert_allclose(got[0, 1], (users[0, 2] + 3 * users[0, 3]) / 4)
    np.testing.assert_allclose(got[1, 0], users[1, 1])  # one non-zero weight: that user
    np.testing.assert_allclose(got[1, 2], users[1, 3])  # zero weight alone: the user itself
    assert np.all(np.isnan(got[0, 2])) and np.all(np.isnan(got[1, 1]))
    np.testing.assert_array_equal(sizes, [[2, 2, 0], [3, 0, 1]])
