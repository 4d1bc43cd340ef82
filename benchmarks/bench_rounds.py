"""Benchmark: Crowd-SFT round simulation speed.

(a) The whole published sweep (users {10,25,50,75,100} x groups {2,3,4,5} x 3 strategies x
    3 metrics x 50 runs x 100 rounds = 9,000 runs) on 2 worker processes, against an anchor: a
    straightforward implementation of one run that loops over users in Python (as the published
    code does for grouping and as a first implementation would for centroids). The anchor is timed
    on 2 runs per (users, groups, strategy) cell and extrapolated to the sweep's 9,000 runs.
(b) One run with 10,000 synthetic users, 20 dims, G = 10, 100 rounds; the anchor is timed on the
    same setting.

Targets (2 cores): (a) under 60 s; (b) under 1 s. Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crowdtune.crowd.simulation.experiments import (
    CrowdSpec,
    load_crowd_matrix,
    make_setups,
    run_cell,
)
from crowdtune.crowd.simulation.rounds import RoundConfig
from crowdtune.crowd.simulation.sweep import SweepGrid, sweep
from crowdtune.spaces.metrics import get_metric


def anchor_run(
    users: np.ndarray,
    expert: np.ndarray,
    start: np.ndarray,
    rng: np.random.Generator,
    *,
    n_groups: int,
    n_rounds: int = 100,
    strategy: str = "random",
    metric: str = "l2",
    delta: float = 0.1,
    error_prob: float = 0.05,
) -> float:
    """One run written the straightforward way: Python loops over users and groups."""
    score = get_metric(metric)
    n_users = len(users)
    points = [1.0] * n_users
    model = start.copy()
    for t in range(n_rounds):
        if strategy == "random" or (
            strategy == "epsilon-greedy" and rng.random() < max(0.4, 1 - t / n_rounds)
        ):
            order = list(rng.permutation(n_users))
        else:
            order = sorted(range(n_users), key=lambda i: points[i])
        groups: list[list[int]] = [[] for _ in range(n_groups)]
        if strategy == "interleaved":
            mid = n_users // 2
            bottom, top = order[:mid], order[mid:]
            rng.shuffle(bottom)
            rng.shuffle(top)
            for half in (top, bottom):
                for k, user in enumerate(half):
                    groups[k % n_groups].append(user)
        else:
            size, extra = divmod(n_users, n_groups)
            k = 0
            for g in range(n_groups):
                take = size + (g < extra)
                groups[g] = order[k : k + take]
                k += take
        candidates = []
        for members in groups:
            total = np.zeros_like(model)
            weight = 0.0
            for user in members:
                w = points[user] ** 2
                total += w * users[user]
                weight += w
            candidates.append(model + delta * (total / weight - model))
        values = [float(score(c, expert)) for c in candidates]
        ranking = sorted(range(n_groups), key=lambda g: -values[g])
        if values[ranking[0]] > float(score(model, expert)):
            if n_groups > 1 and rng.random() < error_prob:
                j = int(rng.integers(1, n_groups))
                ranking[0], ranking[j] = ranking[j], ranking[0]
            for rank, g in enumerate(ranking):
                for user in groups[g]:
                    points[user] += n_groups - rank
            model = candidates[ranking[0]]
    return float(np.linalg.norm(model - expert))


def time_anchor(spec: CrowdSpec, n_groups: int, strategy: str, metric: str, runs: int) -> float:
    """Seconds per run of the anchor on ``runs`` setups drawn like crowdtune's."""
    matrix = load_crowd_matrix(spec)
    users, expert, start, rngs = make_setups(matrix, spec, range(runs), seed=7)
    begin = time.perf_counter()
    for i in range(runs):
        anchor_run(
            users[i],
            expert[i],
            start[i],
            rngs[i],
            n_groups=n_groups,
            strategy=strategy,
            metric=metric,
        )
    return (time.perf_counter() - begin) / runs


def bench_sweep(workers: int, anchor_runs: int) -> None:
    grid = SweepGrid()
    n_runs = 50
    begin = time.perf_counter()
    result = sweep(CrowdSpec(), RoundConfig(), grid, n_runs=n_runs, seed=1, workers=workers)
    ours = time.perf_counter() - begin
    begin = time.perf_counter()
    sweep(CrowdSpec(), RoundConfig(), grid, n_runs=n_runs, seed=1, workers=1)
    ours_single = time.perf_counter() - begin
    total_runs = len(result.runs)
    anchor = 0.0
    for users in grid.users:
        for groups in grid.groups:
            for strategy in grid.strategies:
                per_run = time_anchor(CrowdSpec(n_users=users), groups, strategy, "l2", anchor_runs)
                anchor += per_run * n_runs * len(grid.metrics)
    print(f"(a) published sweep: {total_runs} runs x 100 rounds, {workers} workers")
    print(
        f"    anchor (per-user loops, 1 process, {anchor_runs} runs/cell extrapolated): "
        f"{anchor:8.1f} s"
    )
    print(f"    crowdtune (batched numpy, 1 process):    {ours_single:8.2f} s")
    print(f"    crowdtune (batched numpy, {workers} processes):  {ours:8.2f} s")
    print(f"    ratio anchor/crowdtune, both on 1 process: {anchor / ours_single:.1f}x")
    print(
        f"    ratio anchor (1 process)/crowdtune ({workers} processes): {anchor / ours:.1f}x   "
        f"target: crowdtune < 60 s -> {'met' if ours < 60 else 'NOT met'}"
    )


def bench_scale(anchor: bool) -> None:
    spec = CrowdSpec(dataset="synthetic", n_users=10_000, n_dims=20)
    config = RoundConfig(n_groups=10)
    run_cell(None, CrowdSpec(dataset="synthetic", n_users=100), config, 1, seed=1)  # warm up
    begin = time.perf_counter()
    arrays, _ = run_cell(None, spec, config, 1, seed=1)
    ours = time.perf_counter() - begin
    print("(b) one run: 10,000 synthetic users, 20 dims, G = 10, 100 rounds (setup included)")
    if anchor:
        users, expert, start, rngs = make_setups(None, spec, [0], seed=1)
        begin = time.perf_counter()
        anchor_run(users[0], expert[0], start[0], rngs[0], n_groups=10)
        slow = time.perf_counter() - begin
        print(f"    anchor (per-user loops):    {slow:8.2f} s")
    print(
        f"    crowdtune (batched numpy):  {ours:8.3f} s   "
        f"final distance {arrays['distances'][0, -1]:.3f}"
    )
    if anchor:
        print(f"    ratio anchor/crowdtune: {slow / ours:.1f}x")
    print(f"    target: < 1 s -> {'met' if ours < 1 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--anchor-runs", type=int, default=2, help="anchor runs timed per cell")
    args = parser.parse_args()
    bench_sweep(args.workers, args.anchor_runs)
    bench_scale(anchor=True)
