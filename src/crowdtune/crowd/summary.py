"""Statistics of many seeded runs: means with 95% confidence intervals, bands per round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(
    values: Sequence[float] | np.ndarray | pd.Series, level: float = 0.95
) -> dict[str, float | None]:
    """Mean with a Student-t confidence interval: ``mean ± t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    NaNs are ignored. Bounds are ``None`` with fewer than two values; everything is ``None`` with
    none.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None}
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def first_round_within(distances: np.ndarray, threshold: float) -> np.ndarray:
    """First round (column) whose distance is ``<= threshold`` per run; -1 when never reached."""
    within = distances <= threshold
    return np.where(within.any(axis=1), within.argmax(axis=1), -1)


def summarize_runs(runs: pd.DataFrame) -> dict[str, Any]:
    """Start/final distance and rounds-to-threshold with 95% CIs for one set of runs.

    ``rounds_to_threshold`` averages over the runs that reached the threshold; ``reached`` is
    their share.
    """
    reached = runs["rounds_to_threshold"].dropna().astype(float)
    return {
        "runs": len(runs),
        "start_distance": mean_ci(runs["start_distance"]),
        "final_distance": mean_ci(runs["final_distance"]),
        "rounds_to_threshold": {
            **mean_ci(reached),
            "reached": float(len(reached) / len(runs)) if len(runs) else None,
        },
        "improving_rounds": mean_ci(runs["improving_rounds"]),
    }


def distance_bands(rounds: pd.DataFrame, by: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Mean distance per round with a 95% t-interval, one row per group of ``by`` and round."""
    keys = [*by, "round"]
    grouped = rounds.groupby(keys, sort=False)["distance"]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    half = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1)) * out["std"] / np.sqrt(out["count"])
    half = half.fillna(0.0)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out.drop(columns=["std", "count"])
