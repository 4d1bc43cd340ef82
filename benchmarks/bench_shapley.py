"""Benchmark: Shapley values of the Crowd-SFT centroid game, crowdtune against KernelSHAP.

The game: v(S) = -||mean of S's genre vectors - expert||_2 (the published point game, v(∅) the
metric of the zero vector), on MovieLens users (N = 15, 25, 100, 500; N + 1 random users, the last
one the expert) and on 10,000 synthetic users fitted to MovieLens.

For each N it prints, side by side from the same run:

- the anchor: SHAP's KernelExplainer with the published settings (nsamples=10,000, all-zeros
  background, l1_reg="num_features(N)");
- crowdtune's permutation estimator (antithetic pairs, linear control variate, exact first two
  positions) on a fixed budget, and the smallest budget that matches the anchor's accuracy;
- seconds, game evaluations, Pearson r and relative L2 error against a reference: exact values
  for N ≤ 20, otherwise the mean of two independent long permutation runs whose agreement
  (r ≥ 0.997 required) is printed too.

Targets (2 cores): N = 100, r ≥ 0.999 against the reference in ≤ 1 s; N = 10,000, two independent
runs agree at r ≥ 0.99 in ≤ 60 s (both runs together, on the two cores at once). The credit part
(points of each scheme against accurate Shapley values) is in ``bench_credit.py``.
Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from crowdtune.datasets import movielens_genre_matrix, synthetic_crowd
from crowdtune.valuation import CentroidGame, ValuationResult, exact_shapley, permutation_shapley
from crowdtune.valuation.kernel import kernel_shapley

#: Seconds of each of the two reference runs, by N.
REFERENCE_SECONDS = {25: 10.0, 100: 10.0, 500: 30.0, 10_000: 90.0}


@dataclass
class Accuracy:
    r: float
    rel_l2: float

    def __str__(self) -> str:
        return f"r={self.r:.5f}  rel.L2={self.rel_l2:.4f}"


def accuracy(values: np.ndarray, reference: np.ndarray) -> Accuracy:
    r = float(np.corrcoef(values, reference)[0, 1])
    return Accuracy(r, float(np.linalg.norm(values - reference) / np.linalg.norm(reference)))


def movielens_game(n: int, seed: int) -> CentroidGame:
    matrix = movielens_genre_matrix().to_numpy(dtype=float)
    rows = np.random.default_rng(seed).choice(len(matrix), n + 1, replace=False)
    return CentroidGame(matrix[rows[:n]], matrix[rows[n]])


def synthetic_game(n: int, seed: int) -> CentroidGame:
    pool = synthetic_crowd(n + 1, 20, np.random.default_rng(seed))
    return CentroidGame(pool[:n], pool[n])


def two_runs(game: CentroidGame, seconds: float, seeds: tuple[int, int]) -> list[ValuationResult]:
    """Two independent permutation runs at once, one per core (NumPy releases the GIL)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda s: permutation_shapley(game, seconds=seconds, rng=s), seeds))


def reference_values(game: CentroidGame, n: int) -> np.ndarray:
    if n <= 20:
        result = exact_shapley(game)
        print(f"  reference: exact, {result.n_evaluations:,} evaluations, {result.seconds:.2f} s")
        return result.values
    first, second = two_runs(game, REFERENCE_SECONDS[n], (1001, 1002))
    agree = accuracy(first.values, second.values).r
    print(
        f"  reference: two permutation runs of {first.n_samples * 2:,} and "
        f"{second.n_samples * 2:,} permutations, agreeing at r={agree:.5f} "
        f"({'ok' if agree >= 0.997 else 'BELOW the required 0.997'})"
    )
    return (first.values + second.values) / 2


def row(label: str, result: ValuationResult, reference: np.ndarray) -> Accuracy:
    acc = accuracy(result.values, reference)
    print(f"  {label:<34} {result.seconds:8.3f} s  {result.n_evaluations:>12,} evals  {acc}")
    return acc


def matching_budget(game: CentroidGame, target: float, reference: np.ndarray) -> ValuationResult:
    """crowdtune's cheapest run (permutations doubling from 8) whose r reaches ``target``."""
    n_permutations = 8
    while True:
        result = permutation_shapley(game, n_permutations=n_permutations, rng=7)
        if accuracy(result.values, reference).r >= target or n_permutations >= 2**20:
            return result
        n_permutations *= 2


def bench_movielens(n: int, permutations: int, seed: int, kernel: bool) -> None:
    print(f"\nMovieLens, N = {n} (seed {seed})")
    game = movielens_game(n, seed)
    reference = reference_values(game, n)
    ours = row(
        f"crowdtune, {permutations:,} permutations",
        permutation_shapley(game, n_permutations=permutations, rng=3),
        reference,
    )
    if n == 100:
        print(f"  target N=100: r >= 0.999 in <= 1 s -> r={ours.r:.5f}")
    if not kernel:
        return
    anchor = kernel_shapley(game, nsamples=10_000, rng=3)
    anchor_acc = row("anchor: KernelSHAP, published", anchor, reference)
    matched = matching_budget(game, anchor_acc.r, reference)
    matched_acc = row(
        f"crowdtune matching the anchor ({matched.n_samples * 2:,} perms)", matched, reference
    )
    if matched_acc.r >= anchor_acc.r:
        print(
            f"  speed ratio at equal or better accuracy: {anchor.seconds / matched.seconds:.0f}x "
            f"({anchor.seconds:.2f} s vs {matched.seconds:.3f} s)"
        )


def bench_synthetic(n: int, seconds: float, seed: int) -> None:
    print(f"\nSynthetic, N = {n:,} (seed {seed})")
    game = synthetic_game(n, seed)
    start = time.perf_counter()
    first, second = two_runs(game, seconds, (3, 4))
    wall = time.perf_counter() - start
    agree = accuracy(first.values, second.values)
    print(
        f"  crowdtune, two runs of {seconds:g} s budget at once: {wall:.1f} s wall, "
        f"{first.n_samples * 2:,} + {second.n_samples * 2:,} permutations, "
        f"{first.n_evaluations + second.n_evaluations:,} evaluations; agreement r={agree.r:.5f}"
    )
    print(f"  target N=10,000: two runs agree at r >= 0.99 in <= 60 s -> r={agree.r:.5f}")
    reference = reference_values(game, n)
    row("crowdtune run 1 vs reference", first, reference)
    row("crowdtune run 2 vs reference", second, reference)
    print(
        "  anchor: KernelSHAP, published settings, is not run at N = 10,000: see RESULTS.md for why"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Skip N = 500 and N = 10,000.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_movielens(15, 2_000, args.seed, kernel=True)
    bench_movielens(25, 2_000, args.seed, kernel=True)
    bench_movielens(100, 2_000, args.seed, kernel=True)
    if not args.quick:
        bench_movielens(500, 2_000, args.seed, kernel=True)
        bench_synthetic(10_000, 25.0, args.seed)


if __name__ == "__main__":
    main()
