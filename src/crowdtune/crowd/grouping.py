"""Grouping strategies: split every run's users into G groups for one round, all runs at once.

Each strategy maps ``points`` of shape (n_runs, n_users) to an int array of the same shape
holding every user's group. Randomness comes in as ``keys``: uniform draws of shape
(n_runs, n_users), one fresh row per run and round, so a run's groups depend only on its own
random stream (the same seed gives the same groups in a batch of 1 or 1,000 runs). Sorting
uniform keys gives a uniformly random permutation.

The three strategies are those of the published Crowd-SFT user-grouping study:

``random``
    a random permutation cut into G near-equal contiguous groups (as ``numpy.array_split``).
``epsilon-greedy``
    with probability ``max(floor, schedule(t / R))`` the random split above, otherwise users sorted
    by points (ascending, ties by user index) and cut into G contiguous groups, so the strongest
    contributors end up together.
``interleaved``
    users sorted by points; the bottom half (``n // 2`` users) and the top half are shuffled
    separately and each is dealt round-robin to the groups, so every group mixes strong and weak
    contributors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crowdtune.validation import check_choice

STRATEGIES = ("random", "epsilon-greedy", "interleaved")
SCHEDULES = ("linear", "exponential", "constant")


def split_positions(n_users: int, n_groups: int) -> np.ndarray:
    """Group of each position in an ordering cut as ``numpy.array_split`` cuts it.

    The first ``n_users % n_groups`` groups get one user more than the others.
    """
    sizes = np.full(n_groups, n_users // n_groups)
    sizes[: n_users % n_groups] += 1
    return np.repeat(np.arange(n_groups), sizes)


def interleave_positions(n_users: int, n_groups: int) -> np.ndarray:
    """Group of each position when the bottom and top halves are each dealt round-robin."""
    mid = n_users // 2
    return np.concatenate([np.arange(mid) % n_groups, np.arange(n_users - mid) % n_groups])


def assign(order: np.ndarray, position_groups: np.ndarray) -> np.ndarray:
    """Groups per user given each run's ordering of users and the group of each position."""
    groups = np.empty_like(order)
    np.put_along_axis(groups, order, np.broadcast_to(position_groups, order.shape), axis=1)
    return groups


def explore_probability(schedule: str, floor: float, round_index: int, n_rounds: int) -> float:
    """Probability that epsilon-greedy groups at random in round ``round_index`` (0-based).

    ``linear`` is the published ``max(floor, 1 - t/R)``; ``exponential`` decays as
    ``exp(-3 t/R)``; ``constant`` always explores with probability ``floor``.
    """
    progress = round_index / n_rounds
    if schedule == "linear":
        decayed = 1.0 - progress
    elif schedule == "exponential":
        decayed = float(np.exp(-3.0 * progress))
    elif schedule == "constant":
        decayed = 0.0
    else:
        check_choice(schedule, SCHEDULES, "explore schedule")
    return max(floor, decayed)


@dataclass(frozen=True)
class RoundRandomness:
    """The random draws one round consumes, per run."""

    keys: np.ndarray  # (n_runs, n_users) uniform: permutations and shuffles
    explore: np.ndarray  # (n_runs,) uniform: epsilon-greedy coin


GroupingStrategy = Callable[[np.ndarray, RoundRandomness, int, int, int], np.ndarray]


def random_groups(
    points: np.ndarray, draws: RoundRandomness, n_groups: int, round_index: int, n_rounds: int
) -> np.ndarray:
    order = np.argsort(draws.keys, axis=1)
    return assign(order, split_positions(points.shape[1], n_groups))


def make_epsilon_greedy(floor: float = 0.4, schedule: str = "linear") -> GroupingStrategy:
    """Epsilon-greedy grouping with the given exploration floor and decay schedule."""
    explore_probability(schedule, floor, 0, 1)  # fail early on an unknown schedule

    def epsilon_greedy_groups(
        points: np.ndarray, draws: RoundRandomness, n_groups: int, round_index: int, n_rounds: int
    ) -> np.ndarray:
        p_explore = explore_probability(schedule, floor, round_index, n_rounds)
        by_points = np.argsort(points, axis=1, kind="stable")
        at_random = np.argsort(draws.keys, axis=1)
        order = np.where((draws.explore < p_explore)[:, None], at_random, by_points)
        return assign(order, split_positions(points.shape[1], n_groups))

    return epsilon_greedy_groups


def interleaved_groups(
    points: np.ndarray, draws: RoundRandomness, n_groups: int, round_index: int, n_rounds: int
) -> np.ndarray:
    n_users = points.shape[1]
    rank = np.argsort(np.argsort(points, axis=1, kind="stable"), axis=1)
    top_half = rank >= n_users // 2
    # Keys lie in [0, 1): adding 1 for the top half orders the bottom half first, each in random
    # order, which is the published "shuffle each half separately".
    order = np.argsort(top_half + draws.keys, axis=1)
    return assign(order, interleave_positions(n_users, n_groups))


def get_strategy(name: str, *, floor: float = 0.4, schedule: str = "linear") -> GroupingStrategy:
    """The grouping strategy called ``name``; an unknown name raises ``ValueError``."""
    if name == "random":
        return random_groups
    if name == "epsilon-greedy":
        return make_epsilon_greedy(floor, schedule)
    if name == "interleaved":
        return interleaved_groups
    check_choice(name, STRATEGIES, "strategy")
    raise AssertionError("unreachable")


def group_round(
    names: Sequence[str],
    points: Mapping[str, float] | None,
    strategy: str,
    n_groups: int,
    round_index: int,
    horizon: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every contributor's group (0-based) for one round of a project: the simulation's
    strategies on a batch of one run.

    ``names`` are the round's contributors and ``points`` their points so far (missing: 0);
    epsilon-greedy's exploration decays over ``horizon`` rounds (or over the rounds so far, once
    more have run). The draws are taken from ``rng`` in a fixed order (keys, then the
    exploration coin), so a recorded seed repeats the grouping. Used by the rounds on collected
    feedback (:mod:`crowdtune.crowd.feedback`).
    """
    previous = np.array([[float((points or {}).get(name, 0.0)) for name in names]])
    n_rounds = max(horizon, round_index + 1)
    draws = RoundRandomness(keys=rng.random((1, previous.shape[1])), explore=rng.random(1))
    return get_strategy(strategy)(previous, draws, n_groups, round_index, n_rounds)[0]
