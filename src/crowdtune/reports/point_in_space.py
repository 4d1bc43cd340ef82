"""Report sections for the point-in-space experiment (:mod:`crowdtune.crowd.point_in_space`).

The experiment computes every number; this module lays them out: the distance to the target
centre by generation for the three arms (mean over replicates with 95 % t-intervals, each
replicate as a thin line), the target band, the selection bias of the competitive winner, and
the tables behind them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crowdtune.reports.html import (
    Section,
    figure_to_img,
    paragraph,
    render_report,
    style_axes,
    table_html,
)

__all__ = ["ARM_COLORS", "point_in_space_sections", "write_point_in_space_report"]

ARM_COLORS = {"single": "#1f77b4", "competitive": "#d62728", "random": "#7f7f7f"}
ARM_LABELS = {
    "single": "single model (SFT on k nearest)",
    "competitive": "competitive selection (fresh generations)",
    "random": "random winner (ablation)",
}


def _ci(stats: Mapping[str, Any]) -> str:
    mean, low, high = stats.get("mean"), stats.get("ci_low"), stats.get("ci_high")
    if mean is None or not math.isfinite(mean):
        return "—"
    if low is None or high is None:
        return f"{mean:.3f} (one replicate)"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _distance_figure(
    summary: Mapping[str, Any], table: pd.DataFrame, band: Mapping[str, float]
) -> str:
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.axhspan(band["low"], band["high"], color="#2ca02c", alpha=0.15, linewidth=0)
    ax.axhline(band["median"], color="#2ca02c", linewidth=1.0, linestyle=":", label="target band")
    winners = table[table["role"].isin(["base", "winner"])]
    for offset, arm in zip((-0.06, 0.0, 0.06), ARM_COLORS, strict=True):
        rows = summary["arms"].get(arm, [])
        if not rows:
            continue
        x = [r["generation"] + offset for r in rows]
        means = [r["mean"] for r in rows]
        for _, run in winners[winners["arm"] == arm].groupby("replicate"):
            run = run.sort_values("generation")
            ax.plot(run["generation"] + offset, run["distance"], color=ARM_COLORS[arm], alpha=0.25)
        low = [r["mean"] - r["ci_low"] if r["ci_low"] is not None else 0.0 for r in rows]
        high = [r["ci_high"] - r["mean"] if r["ci_high"] is not None else 0.0 for r in rows]
        ax.errorbar(
            x,
            means,
            yerr=[low, high],
            color=ARM_COLORS[arm],
            marker="o",
            linewidth=2.2,
            capsize=4,
            label=ARM_LABELS[arm],
        )
    competitive = winners[(winners["arm"] == "competitive") & (winners["generation"] > 0)]
    if not competitive.empty:
        selected = competitive.groupby("generation")["selection_distance"].mean()
        ax.plot(
            selected.index,
            selected.to_numpy(),
            color=ARM_COLORS["competitive"],
            linestyle="--",
            marker="x",
            label="competitive, on its selection generations (optimistic)",
        )
    ax.set(
        xlabel="Generation (0 = base model; single model: the i-th k)",
        ylabel="L2 distance to the target centre",
        title="Distance to the target by generation (mean, 95% CI over replicates)",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    style_axes(ax)
    ax.legend(frameon=False, fontsize=8)
    return figure_to_img(fig, "Line chart: distance to the target centre by generation, per arm")


def point_in_space_sections(
    table: pd.DataFrame,
    summary: Mapping[str, Any],
    band: Mapping[str, float],
    target: Mapping[str, Any],
    config: Mapping[str, Any],
) -> list[Section]:
    """Sections of the report: distances by generation, the arms' table, the differences and
    the selection bias, the target and the settings."""
    n = summary["replicates"]
    plot = (
        paragraph(
            "Each arm's distance to the target centre, measured on fresh generations that played "
            f"no part in picking the model; dots are means over {n} replicate(s), bars 95% "
            "Student-t intervals, thin lines single replicates. The dashed red line is the "
            "competitive winner scored on the generations that picked it (the published, "
            "optimistic measure). The green band is the 25-75% range of the distance of the mean "
            f"of {config['n_samples']} target sentences drawn at random: where a model writing "
            "like the target would land with as many generations."
        )
        + f"<figure>{_distance_figure(summary, table, band)}</figure>"
    )
    rows = []
    for arm, entries in summary["arms"].items():
        for entry in entries:
            rows.append(
                {
                    "arm": arm,
                    "generation": entry["generation"],
                    "k (sentences)": entry["k"],
                    "distance, mean [95% CI]": _ci(entry),
                }
            )
    arms = paragraph(
        "k counts the training sentences behind the reported model (for the sequential arms, "
        "summed over the winner's lineage)."
    ) + table_html(pd.DataFrame(rows))
    diff_rows = [
        {"difference": name, "generation": e["generation"], "mean [95% CI]": _ci(e)}
        for name, entries in summary["differences"].items()
        for e in entries
    ]
    differences = (
        paragraph(
            "Paired differences per replicate (negative: the first arm is nearer the target). "
            "Competitive minus random isolates the selection; random minus single isolates "
            "sequential training on fresh subsets."
        )
        + table_html(pd.DataFrame(diff_rows))
        + paragraph(
            "Selection bias of the competitive winner (distance on its selection generations "
            f"minus distance on fresh ones): {_ci(summary['selection_bias'])}."
        )
    )
    centre = (
        pd.DataFrame(
            {
                "emotion": target["labels"],
                "centre": target["centre"],
                "25%": target["low"],
                "75%": target["high"],
            }
        )
        .sort_values("centre", ascending=False)
        .head(8)
    )
    target_html = (
        "<p>Top sentence: <q>"
        + html.escape(str(target.get("sentence", "")))
        + "</q></p>"
        + paragraph(
            f"The target of {target['emotion']}: that sentence and its {target['k']} nearest "
            "neighbours in GoEmotions test (score space). Its eight largest emotions:"
        )
        + table_html(centre)
    )
    settings = table_html(
        pd.DataFrame({"setting": list(config), "value": [str(v) for v in config.values()]})
    )
    return [
        Section("Distance to the target by generation", plot),
        Section("Arms", arms),
        Section("Differences between arms and selection bias", differences),
        Section("Target", target_html),
        Section("Settings", settings),
    ]


def write_point_in_space_report(
    path: Path | str,
    table: pd.DataFrame,
    summary: Mapping[str, Any],
    band: Mapping[str, float],
    target: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Path:
    """Write the self-contained HTML report to ``path``."""
    return render_report(
        path,
        title=f"Point in space: {config['emotion']} on {config['model']}",
        intro=(
            "Single-model SFT against competitive selection of LoRA candidates and the "
            "random-winner ablation, measured in the GoEmotions emotion space."
        ),
        sections=point_in_space_sections(table, summary, band, target, config),
    )
