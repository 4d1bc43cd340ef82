"""Tests for the Crowd-SFT round engine (crowdtune.crowd.simulation.rounds) against the published
rules.

The centrepiece is a plain reference implementation, written here with Python loops over users
and groups straight from the spec of issue #2, that consumes the same pre-drawn keys, coins and
noise as the engine; the vectorised engine must reproduce its distances, points and groups.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from itertools import product

import numpy as np
import pandas as pd
import pytest

from crowdtune.crowd.grouping import get_strategy
from crowdtune.crowd.points import get_scheme
from crowdtune.crowd.simulation import experiments
from crowdtune.crowd.simulation.experiments import (
    CrowdSpec,
    cell_tables,
    run_cell,
    simulate_grouping,
)
from crowdtune.crowd.simulation.rounds import RoundConfig, draw_run_randomness, run_rounds
from crowdtune.crowd.simulation.summary import first_round_within, summarize_runs
from crowdtune.crowd.simulation.sweep import SweepGrid, sweep
from crowdtune.spaces.metrics import get_metric
from crowdtune.valuation.learners import PointLearner

STRATEGIES = ("random", "epsilon-greedy", "interleaved")
METRICS = ("l2", "l1", "dot", "cosine")
SCHEMES = ("rank", "marginal")

# --------------------------------------------------------------------------------------------
# Reference implementation: loops only, no library helpers.
# --------------------------------------------------------------------------------------------


def ref_score(metric: str, a: list[float], e: list[float]) -> float:
    if metric == "l2":
        return -math.sqrt(sum((x - y) ** 2 for x, y in zip(a, e, strict=True)))
    if metric == "l1":
        return -sum(abs(x - y) for x, y in zip(a, e, strict=True))
    dot = sum(x * y for x, y in zip(a, e, strict=True))
    if metric == "dot":
        return dot
    norm_a = math.sqrt(sum(x * x for x in a))
    norm_e = math.sqrt(sum(y * y for y in e))
    return dot / (norm_a * norm_e) if norm_a * norm_e > 0 else 0.0


def ref_cut(order: list[int], n_groups: int) -> list[list[int]]:
    """Contiguous near-equal pieces, the first n % G one longer (numpy.array_split's rule)."""
    n = len(order)
    pieces, begin = [], 0
    for g in range(n_groups):
        size = n // n_groups + (1 if g < n % n_groups else 0)
        pieces.append(order[begin : begin + size])
        begin += size
    return pieces


def ref_explore_probability(schedule: str, floor: float, t: int, n_rounds: int) -> float:
    if schedule == "linear":
        decayed = 1.0 - t / n_rounds
    elif schedule == "exponential":
        decayed = math.exp(-3.0 * t / n_rounds)
    else:
        decayed = 0.0
    return max(floor, decayed)


def ref_groups(
    cfg: RoundConfig,
    points: list[float],
    keys: list[float],
    explore_coin: float,
    t: int,
    events: Counter,
) -> list[list[int]]:
    n, n_groups = len(points), cfg.n_groups
    at_random = sorted(range(n), key=lambda u: keys[u])
    by_points = sorted(range(n), key=lambda u: (points[u], u))
    if cfg.strategy == "random":
        return ref_cut(at_random, n_groups)
    if cfg.strategy == "epsilon-greedy":
        p = ref_explore_probability(cfg.explore_schedule, cfg.explore_floor, t, cfg.n_rounds)
        events["explore" if explore_coin < p else "exploit"] += 1
        return ref_cut(at_random if explore_coin < p else by_points, n_groups)
    assert cfg.strategy == "interleaved"
    bottom = sorted(by_points[: n // 2], key=lambda u: keys[u])
    top = sorted(by_points[n // 2 :], key=lambda u: keys[u])
    return [bottom[g::n_groups] + top[g::n_groups] for g in range(n_groups)]


def ref_centroid(users: np.ndarray, members: list[int], points: list[float], power: float):
    if not members:
        return None
    weights = [max(points[u], 0.0) ** power for u in members]
    if sum(weights) <= 0:
        weights = [1.0] * len(members)
    total = sum(weights)
    dims = users.shape[1]
    return [
        sum(w * float(users[u][k]) for w, u in zip(weights, members, strict=True)) / total
        for k in range(dims)
    ]


def reference_run(users, expert, start, keys, coins, noise, cfg: RoundConfig, events: Counter):
    """One run from the spec. Returns distances (R+1,), points (N,), groups (R, N), chosen (R,).

    ``events`` counts what happened (explore/exploit rounds, evaluator swaps), so that tests can
    check that the comparison exercised those branches.
    """
    n, n_groups = users.shape[0], cfg.n_groups
    e = [float(x) for x in expert]
    model = [float(x) for x in start]
    points = [float(cfg.initial_points)] * n
    distances = [-ref_score("l2", model, e)]
    group_log, chosen_log = [], []
    for t in range(cfg.n_rounds):
        groups = ref_groups(cfg, points, list(keys[t]), float(coins[t, 0]), t, events)
        labels = [0] * n
        for g, members in enumerate(groups):
            for u in members:
                labels[u] = g
        group_log.append(labels)

        current = ref_score(cfg.metric, model, e)
        candidates, true_scores, observed = {}, {}, {}
        for g, members in enumerate(groups):
            centroid = ref_centroid(users, members, points, cfg.weight_power)
            if centroid is None:
                continue
            cand = [m + cfg.delta * (c - m) for m, c in zip(model, centroid, strict=True)]
            candidates[g] = cand
            true_scores[g] = ref_score(cfg.metric, cand, e)
            observed[g] = true_scores[g] + cfg.score_noise * float(noise[t, g])

        ranking = sorted(observed, key=lambda g: (-observed[g], g))
        ranking += [g for g in range(n_groups) if g not in observed]
        improved = observed[ranking[0]] > current
        if improved and n_groups > 1 and coins[t, 1] < cfg.error_prob:
            other = 1 + math.floor(float(coins[t, 2]) * (n_groups - 1))
            ranking[0], ranking[other] = ranking[other], ranking[0]
            events["swap"] += 1
        chosen = ranking[0]

        new_points = list(points)
        if cfg.scheme == "rank":
            if improved:
                for r, g in enumerate(ranking):
                    for u in groups[g]:
                        new_points[u] += n_groups - r
        else:
            for g, members in enumerate(groups):
                for u in members:
                    new_points[u] += true_scores[g] - current
        points = new_points
        if improved:
            model = candidates[chosen]
        chosen_log.append(chosen if improved else -1)
        distances.append(-ref_score("l2", model, e))
    return np.array(distances), np.array(points), np.array(group_log), np.array(chosen_log)


def random_problem(seed: int, n_runs: int, n_users: int, n_dims: int = 3):
    rng = np.random.default_rng(seed)
    users = rng.uniform(0.0, 5.0, (n_runs, n_users, n_dims))
    expert = rng.uniform(0.0, 5.0, (n_runs, n_dims))
    start = rng.uniform(0.0, 5.0, (n_runs, n_dims))
    return users, expert, start


def generators(seed: int, n_runs: int) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, i]) for i in range(n_runs)]


def assert_matches_reference(cfg: RoundConfig, n_users: int, seed: int, n_runs: int = 3) -> Counter:
    users, expert, start = random_problem(seed, n_runs, n_users)
    result = run_rounds(users, expert, start, generators(seed, n_runs), cfg, trace=range(n_runs))
    events: Counter = Counter()
    for i, rng in enumerate(generators(seed, n_runs)):
        # The documented per-run layout: keys, then coins, then noise.
        keys = rng.random((cfg.n_rounds, n_users))
        coins = rng.random((cfg.n_rounds, 3))
        noise = rng.standard_normal((cfg.n_rounds, cfg.n_groups))
        distances, points, groups, chosen = reference_run(
            users[i], expert[i], start[i], keys, coins, noise, cfg, events
        )
        trace = result.traces[i]
        np.testing.assert_array_equal(trace.groups, groups)
        np.testing.assert_array_equal(trace.chosen, chosen)
        np.testing.assert_allclose(result.distances[i], distances, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result.points[i], points, rtol=1e-10, atol=1e-12)
        assert result.improving_rounds[i] == np.sum(chosen >= 0)
    return events


CASES = [(7, 2), (12, 3), (7, 4), (12, 4)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_engine_matches_loop_reference(strategy: str, metric: str, scheme: str) -> None:
    events: Counter = Counter()
    for case, (n_users, n_groups) in enumerate(CASES):
        cfg = RoundConfig(
            n_groups=n_groups,
            n_rounds=15,
            strategy=strategy,
            metric=metric,
            scheme=scheme,
            error_prob=0.3,
        )
        events += assert_matches_reference(cfg, n_users, seed=100 + case)
    assert events["swap"] > 0  # the evaluator-error path was compared too
    if strategy == "epsilon-greedy":
        assert events["explore"] > 0 and events["exploit"] > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_engine_matches_loop_reference_with_score_noise(strategy: str) -> None:
    for scheme, (n_users, n_groups) in product(SCHEMES, [(7, 3), (12, 4)]):
        cfg = RoundConfig(
            n_groups=n_groups,
            n_rounds=15,
            strategy=strategy,
            scheme=scheme,
            error_prob=0.3,
            score_noise=0.5,
        )
        assert_matches_reference(cfg, n_users, seed=7)


@pytest.mark.parametrize("schedule", ["linear", "exponential", "constant"])
def test_epsilon_greedy_schedules_match_loop_reference(schedule: str) -> None:
    for floor in (0.0, 0.4):
        cfg = RoundConfig(
            n_groups=3,
            n_rounds=15,
            strategy="epsilon-greedy",
            explore_schedule=schedule,
            explore_floor=floor,
            error_prob=0.3,
        )
        assert_matches_reference(cfg, 12, seed=11)


def test_engine_matches_reference_with_non_default_weights_and_start_points() -> None:
    cfg = RoundConfig(
        n_groups=3,
        n_rounds=15,
        strategy="interleaved",
        scheme="marginal",
        delta=0.7,
        weight_power=1.0,
        initial_points=0.0,
        error_prob=0.3,
    )
    assert_matches_reference(cfg, 12, seed=5)


def test_trace_agrees_with_result() -> None:
    cfg = RoundConfig(n_groups=3, n_rounds=12, strategy="epsilon-greedy", error_prob=0.3)
    users, expert, start = random_problem(21, 3, 9)
    result = run_rounds(users, expert, start, generators(21, 3), cfg, trace=(1,))
    assert list(result.traces) == [1]
    trace = result.traces[1]
    assert trace.n_rounds == 12 and trace.strategy == "epsilon-greedy"
    np.testing.assert_array_equal(trace.points[-1], result.points[1])
    np.testing.assert_array_equal(trace.points[0], np.ones(9))
    np.testing.assert_allclose(
        np.linalg.norm(trace.model_path - expert[1], axis=1), result.distances[1]
    )
    assert np.sum(trace.chosen >= 0) == result.improving_rounds[1]


def test_run_streams_follow_documented_seeding() -> None:
    setup, dynamics = experiments.run_streams(7, 3)
    expected = np.random.SeedSequence(7, spawn_key=(3,)).spawn(2)
    assert setup.random() == np.random.default_rng(expected[0]).random()
    assert dynamics.random() == np.random.default_rng(expected[1]).random()


def test_draw_run_randomness_uses_documented_order() -> None:
    keys, coins, noise = draw_run_randomness(generators(3, 2), 4, 5, 3)
    for i, rng in enumerate(generators(3, 2)):
        np.testing.assert_array_equal(keys[i], rng.random((4, 5)))
        np.testing.assert_array_equal(coins[i], rng.random((4, 3)))
        np.testing.assert_array_equal(noise[i], rng.standard_normal((4, 3)))


# --------------------------------------------------------------------------------------------
# Metrics, learner and point schemes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_metrics_match_formulas(metric: str) -> None:
    rng = np.random.default_rng(0)
    a, e = rng.normal(size=(6, 4)), rng.normal(size=4)
    expected = {
        "l2": -np.linalg.norm(a - e, axis=1),
        "l1": -np.abs(a - e).sum(axis=1),
        "dot": a @ e,
        "cosine": (a @ e) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e)),
    }[metric]
    np.testing.assert_allclose(get_metric(metric)(a, e), expected)


def test_cosine_is_zero_for_a_zero_vector() -> None:
    assert get_metric("cosine")(np.zeros(3), np.ones(3)) == 0.0


def test_point_learner_steps_delta_toward_feedback() -> None:
    learner = PointLearner(np.zeros(2), metric="l2", delta=0.25)
    np.testing.assert_allclose(learner.fit(np.array([4.0, 0.0]), np.array([0.0, 8.0])), [3.0, 2.0])
    assert learner.score(np.array([3.0, 4.0])) == pytest.approx(-5.0)


# --------------------------------------------------------------------------------------------
# Invariances
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_gives_same_results_as_each_run_alone(strategy: str) -> None:
    cfg = RoundConfig(n_groups=3, n_rounds=20, strategy=strategy, error_prob=0.3, score_noise=0.2)
    users, expert, start = random_problem(1, 4, 9)
    batch = run_rounds(users, expert, start, generators(1, 4), cfg)
    for i in range(4):
        alone = run_rounds(
            users[i : i + 1], expert[i : i + 1], start[i : i + 1], [generators(1, 4)[i]], cfg
        )
        np.testing.assert_array_equal(alone.distances[0], batch.distances[i])
        np.testing.assert_array_equal(alone.points[0], batch.points[i])
        assert alone.improving_rounds[0] == batch.improving_rounds[i]


def test_run_cell_same_seed_is_identical_and_seed_matters() -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=8, n_dims=4)
    cfg = RoundConfig(n_groups=3, n_rounds=10, error_prob=0.3)
    first, _ = run_cell(None, spec, cfg, 4, seed=3)
    second, _ = run_cell(None, spec, cfg, 4, seed=3)
    other, _ = run_cell(None, spec, cfg, 4, seed=4)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["distances"], other["distances"])


def test_run_cell_does_not_depend_on_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=8, n_dims=4)
    cfg = RoundConfig(n_groups=3, n_rounds=10, strategy="interleaved", error_prob=0.3)
    whole, whole_traces = run_cell(None, spec, cfg, 5, seed=2, trace_runs=(0, 3))
    sizes: list[int] = []
    monkeypatch.setattr(experiments, "BATCH_ELEMENTS", 2 * 10 * 8)  # two runs per batch
    split, split_traces = run_cell(
        None, spec, cfg, 5, seed=2, trace_runs=(0, 3), on_batch=sizes.append
    )
    assert sizes == [2, 2, 1]
    for name in whole:
        np.testing.assert_array_equal(whole[name], split[name])
    assert sorted(split_traces) == [0, 3]
    np.testing.assert_array_equal(whole_traces[3].model_path, split_traces[3].model_path)


def test_runs_share_their_setup_across_strategies() -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=8, n_dims=4)
    result = simulate_grouping(
        spec, RoundConfig(n_groups=2, n_rounds=5), strategies=STRATEGIES, n_runs=3, seed=9
    )
    starts = result.runs.pivot(index="run", columns="strategy", values="start_distance")
    assert starts.shape == (3, 3)
    for strategy in STRATEGIES:
        np.testing.assert_array_equal(starts[strategy], starts["random"])


def test_sweep_does_not_depend_on_worker_count(movielens_available: bool) -> None:
    spec = CrowdSpec(dataset="movielens")
    cfg = RoundConfig(n_rounds=5)
    grid = SweepGrid(users=(5, 8), groups=(2,), strategies=("interleaved",), metrics=("l1",))
    one = sweep(spec, cfg, grid, n_runs=3, seed=4, workers=1)
    two = sweep(spec, cfg, grid, n_runs=3, seed=4, workers=2)
    assert len(one.runs) == 6
    pd.testing.assert_frame_equal(one.runs, two.runs)
    pd.testing.assert_frame_equal(one.points, two.points)
    assert one.runs["start_distance"].nunique() > 1


# --------------------------------------------------------------------------------------------
# Behaviour in special settings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_l2_distance_never_increases_without_errors_or_noise(strategy: str) -> None:
    cfg = RoundConfig(n_groups=3, n_rounds=40, strategy=strategy, error_prob=0.0)
    users, expert, start = random_problem(2, 5, 12)
    result = run_rounds(users, expert, start, generators(2, 5), cfg)
    assert np.all(np.diff(result.distances, axis=1) <= 0)
    assert np.all(result.improving_rounds > 0)


def test_evaluator_errors_can_increase_the_distance() -> None:
    # The counterpart of the test above: with errors the monotonicity really can break.
    cfg = RoundConfig(n_groups=3, n_rounds=40, error_prob=1.0)
    users, expert, start = random_problem(2, 5, 12)
    result = run_rounds(users, expert, start, generators(2, 5), cfg)
    assert np.any(np.diff(result.distances, axis=1) > 0)


def test_one_group_full_step_jumps_to_the_crowd_centroid() -> None:
    users, expert, start = random_problem(4, 2, 6)
    centroid = users.mean(axis=1)
    expert[0] = centroid[0] + 0.1  # moving to the centroid helps run 0
    start[1] = expert[1]  # run 1 starts on the expert: no move can help
    cfg = RoundConfig(n_groups=1, n_rounds=3, delta=1.0, error_prob=0.0)
    result = run_rounds(users, expert, start, generators(4, 2), cfg, trace=(0, 1))
    np.testing.assert_allclose(result.traces[0].model_path[1], centroid[0])
    np.testing.assert_allclose(result.distances[0, 1], np.linalg.norm(centroid[0] - expert[0]))
    np.testing.assert_array_equal(result.traces[1].model_path, np.repeat(start[1:], 4, axis=0))
    assert result.improving_rounds.tolist() == [1, 0]
    # Rank points: G - 0 = 1 point to everybody in the one improving round, none otherwise.
    np.testing.assert_array_equal(result.points, [[2.0] * 6, [1.0] * 6])


def test_one_group_full_step_reaches_the_mean_even_with_zero_initial_points() -> None:
    # Equal weights (and all-zero weights, which fall back to the plain mean) give the mean.
    users, expert, start = random_problem(8, 2, 4)
    expert[:] = users.mean(axis=1)
    for initial in (0.0, 2.0):
        cfg = RoundConfig(n_groups=1, n_rounds=1, delta=1.0, error_prob=0.0, initial_points=initial)
        result = run_rounds(users, expert, start, generators(8, 2), cfg)
        np.testing.assert_allclose(result.distances[:, 1], 0.0, atol=1e-12)


def test_marginal_points_can_go_negative_and_are_paid_every_round() -> None:
    # Start on the expert: every candidate is worse, nothing moves, every group loses points.
    users, expert, start = random_problem(6, 1, 8)
    start[:] = expert
    cfg = RoundConfig(n_groups=2, n_rounds=4, scheme="marginal")
    result = run_rounds(users, expert, start, generators(6, 1), cfg)
    assert result.improving_rounds[0] == 0
    assert np.all(result.points < 1.0)
    assert np.any(result.points < 0.0)


def test_rank_points_without_improvement_stay_at_initial() -> None:
    users, expert, start = random_problem(6, 1, 8)
    start[:] = expert
    cfg = RoundConfig(n_groups=2, n_rounds=4, scheme="rank", initial_points=1.5)
    result = run_rounds(users, expert, start, generators(6, 1), cfg)
    np.testing.assert_array_equal(result.points, np.full((1, 8), 1.5))


# --------------------------------------------------------------------------------------------
# Empty groups (interleaved with G > ceil(N / 2))
# --------------------------------------------------------------------------------------------


def empty_group_run(scheme: str = "rank"):
    users, expert, start = random_problem(10, 3, 5)
    start[:] = 10.0  # far away: almost every round improves
    cfg = RoundConfig(
        n_groups=4, n_rounds=30, strategy="interleaved", scheme=scheme, error_prob=1.0
    )
    return run_rounds(users, expert, start, generators(10, 3), cfg, trace=(0, 1, 2))


def test_empty_group_never_moves_the_model() -> None:
    result = empty_group_run()
    assert np.all(np.isfinite(result.distances))
    assert np.all(np.isfinite(result.points))
    for trace in result.traces.values():
        # N=5, G=4: bottom half 2 users -> groups 0,1; top half 3 users -> groups 0,1,2.
        assert np.all(np.bincount(trace.groups.ravel(), minlength=4)[3] == 0)
        assert 3 not in trace.chosen
        assert np.all(np.isfinite(trace.model_path))


def test_empty_group_run_matches_reference_without_errors() -> None:
    cfg = RoundConfig(n_groups=4, n_rounds=15, strategy="interleaved", error_prob=0.0)
    assert_matches_reference(cfg, 5, seed=12)


def test_rank_points_are_paid_only_in_rounds_where_the_model_moves() -> None:
    result = empty_group_run("rank")
    for trace in result.traces.values():
        for t in range(trace.n_rounds):
            if trace.chosen[t] < 0:
                np.testing.assert_array_equal(trace.points[t + 1], trace.points[t])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.0, 1.5, -0.1])
def test_config_rejects_delta_outside_unit_interval(delta: float) -> None:
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\]"):
        RoundConfig(delta=delta)


def test_learner_rejects_delta_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\], got 0"):
        PointLearner(np.zeros(2), delta=0.0)


def test_config_rejects_zero_rounds_and_groups() -> None:
    with pytest.raises(ValueError, match="rounds must be at least 1, got 0"):
        RoundConfig(n_rounds=0)
    with pytest.raises(ValueError, match="groups must be at least 1, got 0"):
        RoundConfig(n_groups=0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("error_prob", 1.5, "error_prob must be in"),
        ("error_prob", -0.1, "error_prob must be in"),
        ("explore_floor", 2.0, "explore_floor must be in"),
        ("score_noise", -1.0, "must be non-negative"),
        ("weight_power", -1.0, "must be non-negative"),
    ],
)
def test_config_rejects_out_of_range_settings(field: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RoundConfig(**{field: value})


def test_more_groups_than_users_is_rejected() -> None:
    users, expert, start = random_problem(0, 1, 3)
    with pytest.raises(ValueError, match=r"groups \(4\) cannot exceed users \(3\)"):
        run_rounds(users, expert, start, generators(0, 1), RoundConfig(n_groups=4))
    with pytest.raises(ValueError, match=r"groups \(4\) cannot exceed users \(3\)"):
        run_cell(None, CrowdSpec(dataset="synthetic", n_users=3), RoundConfig(n_groups=4), 1, 0)


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("strategy", "unknown strategy 'nope'; choose one of: random, epsilon-greedy, interleaved"),
        ("metric", "unknown metric 'nope'; choose one of: l2, l1, dot, cosine"),
        ("scheme", "unknown point scheme 'nope'; choose one of: rank, marginal"),
        (
            "explore_schedule",
            "unknown explore schedule 'nope'; choose one of: linear, exponential, constant",
        ),
    ],
)
def test_config_rejects_unknown_names_listing_choices(field: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RoundConfig(**{field: "nope"})


def test_lookups_reject_unknown_names_listing_choices() -> None:
    with pytest.raises(ValueError, match="choose one of: random, epsilon-greedy, interleaved"):
        get_strategy("greedy")
    with pytest.raises(ValueError, match="choose one of: l2, l1, dot, cosine"):
        get_metric("l3")
    with pytest.raises(ValueError, match="choose one of: rank, marginal"):
        get_scheme("shapley")
    with pytest.raises(ValueError, match="choose one of: linear, exponential, constant"):
        get_strategy("epsilon-greedy", schedule="cosine")


@pytest.mark.parametrize("which", ["rngs", "expert", "start"])
def test_mismatched_batch_lengths_are_rejected(which: str) -> None:
    users, expert, start = random_problem(0, 3, 6)
    rngs = generators(0, 3)
    if which == "rngs":
        rngs = rngs[:2]
    elif which == "expert":
        expert = expert[:2]
    else:
        start = start[:1]
    with pytest.raises(ValueError, match="must all have one entry per run"):
        run_rounds(users, expert, start, rngs, RoundConfig(n_groups=2))


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def test_first_round_within_returns_first_column_or_minus_one() -> None:
    distances = np.array([[9.0, 6.0, 5.0, 4.0], [9.0, 8.0, 7.0, 6.0], [3.0, 6.0, 2.0, 1.0]])
    np.testing.assert_array_equal(first_round_within(distances, 5.0), [2, -1, 0])


def test_summarize_runs_reports_reached_share() -> None:
    runs = pd.DataFrame(
        {
            "start_distance": [10.0, 11.0, 12.0, 13.0],
            "final_distance": [4.0, 6.0, 3.0, 7.0],
            "rounds_to_threshold": pd.array([20, pd.NA, 30, pd.NA], dtype="Int64"),
            "improving_rounds": [50, 40, 60, 30],
        }
    )
    summary = summarize_runs(runs)
    assert summary["runs"] == 4
    assert summary["rounds_to_threshold"]["reached"] == pytest.approx(0.5)
    assert summary["rounds_to_threshold"]["mean"] == pytest.approx(25.0)
    assert summary["final_distance"]["mean"] == pytest.approx(5.0)
    assert summary["improving_rounds"]["mean"] == pytest.approx(45.0)


def test_cell_tables_mark_unreached_threshold_as_missing() -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=6, n_dims=3)
    cfg = RoundConfig(n_groups=2, n_rounds=5)
    arrays, _ = run_cell(None, spec, cfg, 4, seed=1, threshold=-1.0)  # never reached
    runs, rounds, points = cell_tables(arrays, {"strategy": "random"})
    assert runs["rounds_to_threshold"].isna().all()
    assert len(rounds) == 4 * 6 and len(points) == 4 * 6
    arrays, _ = run_cell(None, spec, cfg, 4, seed=1, threshold=1e9)  # reached at the start
    runs, _, _ = cell_tables(arrays, {"strategy": "random"})
    assert runs["rounds_to_threshold"].tolist() == [0, 0, 0, 0]
    assert summarize_runs(runs)["rounds_to_threshold"]["reached"] == 1.0


def test_simulate_grouping_settings_round_trip() -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=6, n_dims=3)
    cfg = RoundConfig(n_groups=2, n_rounds=5, metric="l1")
    result = simulate_grouping(spec, cfg, n_runs=2, seed=5)
    again = simulate_grouping(
        CrowdSpec(**{k: result.settings[k] for k in ("dataset", "n_users", "n_dims")}),
        dataclasses.replace(cfg, n_rounds=result.settings["n_rounds"]),
        n_runs=result.settings["runs"],
        seed=result.settings["seed"],
    )
    pd.testing.assert_frame_equal(result.runs, again.runs)
