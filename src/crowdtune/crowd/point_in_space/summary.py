"""Summaries of point-in-space runs: per arm and generation over replicates, and across emotions
(Student-t intervals of :func:`crowdtune.stats.mean_ci`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from crowdtune.crowd.point_in_space.arms import ARMS
from crowdtune.stats import mean_ci


def summarize_point_in_space(table: pd.DataFrame) -> dict[str, Any]:
    """Mean reported distance per arm and generation with Student-t 95 % intervals over
    replicates, the paired differences competitive − random and competitive − single, and the
    selection bias of the competitive winner (selection minus fresh distance)."""
    winners = table[table["role"].isin(["base", "winner"])]
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        rows = winners[winners["arm"] == arm]
        by_arm[arm] = [
            {
                "generation": int(g),
                "k": int(rows.loc[rows["generation"] == g, "k"].to_numpy()[0]),
                **mean_ci(rows.loc[rows["generation"] == g, "distance"]),
            }
            for g in sorted(rows["generation"].unique())
        ]
    pivot = winners.pivot_table(
        index=["replicate", "generation"], columns="arm", values="distance"
    ).reset_index()
    differences: dict[str, list[dict[str, Any]]] = {}
    for name, (a, b) in {
        "competitive_minus_random": ("competitive", "random"),
        "competitive_minus_single": ("competitive", "single"),
        "random_minus_single": ("random", "single"),
    }.items():
        if a not in pivot or b not in pivot:
            continue
        later = pivot[pivot["generation"] > 0]
        differences[name] = [
            {
                "generation": int(g),
                **mean_ci(
                    later.loc[later["generation"] == g, a] - later.loc[later["generation"] == g, b]
                ),
            }
            for g in sorted(later["generation"].unique())
        ]
    competitive = winners[(winners["arm"] == "competitive") & (winners["generation"] > 0)]
    bias = competitive["selection_distance"] - competitive["distance"]
    return {
        "replicates": int(table["replicate"].nunique()),
        "arms": by_arm,
        "differences": differences,
        "selection_bias": mean_ci(bias),
    }


def summarize_emotions(tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The published comparison across emotions: each arm's distance at its last generation
    (and the base model's), averaged over each emotion's replicates, then the mean over
    emotions with a Student-t 95 % interval that treats emotions as the units (the published
    figure is a mean over 28 emotions, one run each: single 0.609, competitive 0.448). The
    differences between arms are taken within each emotion first, so they are paired.

    Parameters
    ----------
    tables
        Emotion name to its ``results.csv`` table (:func:`run_arms` rows, any replicates).
    """
    if not tables:
        raise ValueError("no emotions to summarise")
    per_emotion: dict[str, dict[str, float]] = {}
    for emotion, table in tables.items():
        reported = table[table["role"].isin(["base", "winner"])]
        finals = {"base": float(reported.loc[reported["generation"] == 0, "distance"].mean())}
        for arm in ARMS:
            rows = reported[reported["arm"] == arm]
            finals[arm] = float(
                rows.loc[rows["generation"] == rows["generation"].max(), "distance"].mean()
            )
        per_emotion[emotion] = finals
    frame = pd.DataFrame(per_emotion).T
    pairs = {
        "competitive_minus_single": ("competitive", "single"),
        "competitive_minus_random": ("competitive", "random"),
        "random_minus_single": ("random", "single"),
    }
    return {
        "emotions": list(per_emotion),
        "replicates": {e: int(t["replicate"].nunique()) for e, t in tables.items()},
        "per_emotion": per_emotion,
        "final": {column: mean_ci(frame[column]) for column in ("base", *ARMS)},
        "differences": {name: mean_ci(frame[a] - frame[b]) for name, (a, b) in pairs.items()},
    }
