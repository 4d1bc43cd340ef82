"""Statistics of many seeded runs: means with 95% confidence intervals, bands per round.

The intervals themselves are :mod:`crowdtune.stats`'s (:func:`~crowdtune.stats.mean_ci`,
:func:`~crowdtune.stats.t_half_width`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.stats import mean_ci, t_half_width


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
    half = t_half_width(out["std"], out["count"]).fillna(0.0)  # one run: no interval
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out.drop(columns=["std", "count"])
