"""Benchmark: Bradley–Terry bootstrap leaderboards, crowdtune against FastChat's approach.

Data: 100,000 synthetic battles among 100 models (10 % ties), from
:func:`crowdtune.preference.bradley_terry.synthetic_battles`.

It prints, side by side from the same run:

- the anchor: FastChat's ``compute_mle_elo`` bootstrap (``elo_analysis.py``): for every draw,
  resample the battles with ``DataFrame.sample(frac=1, replace=True)`` and fit scikit-learn's
  ``LogisticRegression(fit_intercept=False, penalty=None)`` on the design matrix with every battle
  twice (a tie once as a win, once as a loss). A few draws are timed and the time for 1,000 is
  **extrapolated** from them;
- crowdtune's :func:`bradley_terry` with 1,000 bootstrap draws (one multinomial draw over the
  (pair, outcome) counts per replicate, all replicates fitted by batched Newton steps);
- the ratio of the two, and the largest rating difference between the two point estimates.

Target (2 cores): 1,000 draws in <= 5 s. Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from crowdtune.preference.bradley_terry import synthetic_battles
from crowdtune.preference.leaderboard import bradley_terry


def fastchat_mle_elo(battles: pd.DataFrame, models: pd.Index) -> np.ndarray:
    """FastChat's ``compute_mle_elo`` (ties as half, scale 400, base 10, centred on 1000)."""
    doubled = pd.concat([battles, battles], ignore_index=True)
    n = len(doubled)
    X = np.zeros((n, len(models)))
    X[np.arange(n), models.get_indexer(doubled["model_a"])] = math.log(10)
    X[np.arange(n), models.get_indexer(doubled["model_b"])] = -math.log(10)
    y = (doubled["label"].to_numpy() == 0).astype(float)
    y[: len(battles)][battles["label"].to_numpy() == 2] = 1.0
    # C=inf is scikit-learn >= 1.8's spelling of FastChat's penalty=None.
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6).fit(X, y)
    return 400 * fit.coef_[0] + 1000


def fastchat_bootstrap(battles: pd.DataFrame, models: pd.Index, draws: int, seed: int) -> float:
    """Seconds for ``draws`` FastChat bootstrap rounds (``get_bootstrap_result``)."""
    np.random.seed(seed)  # noqa: NPY002 (as FastChat: sample() draws from the global generator)
    start = time.perf_counter()
    for _ in range(draws):
        fastchat_mle_elo(battles.sample(frac=1.0, replace=True), models)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--battles", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=1000, help="crowdtune bootstrap draws")
    parser.add_argument("--anchor-draws", type=int, default=20, help="anchor draws actually run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = synthetic_battles(args.models, args.battles, seed=args.seed, tie_rate=0.1)
    battles = data.battles
    models = pd.Index(sorted(set(battles["model_a"]) | set(battles["model_b"])))
    print(f"{args.battles:,} synthetic battles among {args.models} models, 10% ties")

    start = time.perf_counter()
    anchor_point = pd.Series(fastchat_mle_elo(battles, models), index=models)
    anchor_fit = time.perf_counter() - start
    anchor_seconds = fastchat_bootstrap(battles, models, args.anchor_draws, args.seed)
    anchor_total = anchor_seconds / args.anchor_draws * args.draws

    start = time.perf_counter()
    board = bradley_terry(battles, n_bootstrap=args.draws, seed=args.seed)
    ours = time.perf_counter() - start

    ratings = board.ratings[models]
    print(f"  {'':<52} {'seconds':>10}")
    print(f"  {'anchor: FastChat LogisticRegression, one fit':<52} {anchor_fit:10.2f}")
    print(
        f"  {f'anchor: {args.anchor_draws} bootstrap draws (measured)':<52} {anchor_seconds:10.2f}"
    )
    print(
        f"  {f'anchor: {args.draws:,} draws (EXTRAPOLATED from {args.anchor_draws})':<52} "
        f"{anchor_total:10.1f}"
    )
    print(f"  {f'crowdtune: fit + {args.draws:,} draws (measured)':<52} {ours:10.2f}")
    print(f"  speed ratio (anchor extrapolated / crowdtune): {anchor_total / ours:.0f}x")
    print(f"  target: {args.draws:,} draws in <= 5 s on 2 cores -> {ours:.2f} s")
    print(
        "  max |rating difference| between the point estimates: "
        f"{np.max(np.abs(ratings - anchor_point)):.2e} points"
    )
    widths = board.table.ci_high - board.table.ci_low
    print(f"  crowdtune 95% interval widths: median {widths.median():.1f} points")


if __name__ == "__main__":
    main()
