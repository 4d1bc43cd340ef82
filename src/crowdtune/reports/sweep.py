"""Report sections for a grouping sweep: final distance over crowd size, groups, strategy, metric.

Takes the sweep's ``cells`` table (one row per setting, with 95% CIs computed by the simulation)
and lays it out; it computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crowdtune.reports.grouping import strategy_colors
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["sweep_sections"]

CELL_COLUMNS = (
    "users", "groups", "strategy", "metric", "runs", "final_distance_mean",
    "final_distance_ci_low", "final_distance_ci_high", "reached_threshold",
)  # fmt: skip


def _curves(cells: pd.DataFrame) -> Section:
    schemes = list(dict.fromkeys(cells["scheme"])) if "scheme" in cells else []
    if schemes:
        cells = cells[cells["scheme"] == schemes[0]]
    metrics = list(dict.fromkeys(cells["metric"]))
    groups = sorted(cells["groups"].unique())
    colors = strategy_colors(cells["strategy"])
    fig = Figure(figsize=(3.0 * len(groups) + 1, 2.6 * len(metrics) + 0.8), layout="constrained")
    axes = np.atleast_2d(
        fig.subplots(len(metrics), len(groups), sharex=True, sharey=True, squeeze=False)
    )
    for i, metric in enumerate(metrics):
        for j, g in enumerate(groups):
            ax = axes[i, j]
            for strategy, color in colors.items():
                cell = cells[
                    (cells["metric"] == metric)
                    & (cells["groups"] == g)
                    & (cells["strategy"] == strategy)
                ]
                cell = cell.sort_values("users")
                if cell.empty:
                    continue
                x = cell["users"].to_numpy(float)
                ax.plot(x, cell["final_distance_mean"], marker="o", color=color, label=strategy)
                ax.fill_between(
                    x, cell["final_distance_ci_low"].to_numpy(float),
                    cell["final_distance_ci_high"].to_numpy(float), color=color, alpha=0.2,
                )  # fmt: skip
            ax.set_title(f"{metric}, {g} groups", fontsize=10)
            ax.grid(True, alpha=0.3)
            if i == len(metrics) - 1:
                ax.set_xlabel("users")
            if j == 0:
                ax.set_ylabel("final L2 distance")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), title="strategy")
    text = paragraph(
        "Mean final L2 distance from the model to the expert after the last round, by crowd size "
        "(x axis), one panel per evaluation metric (rows) and number of groups (columns), one line "
        "per grouping strategy; the shaded band is the 95% confidence interval over runs. Lower "
        "is better. The metric only decides which candidate wins; every panel measures the "
        "outcome in the same L2 distance."
        + (f" Points paid by the {schemes[0]} scheme." if schemes else "")
    )
    return Section(
        "Final distance across the grid", text + figure_to_img(fig, "final distance by users")
    )


def sweep_sections(
    cells: pd.DataFrame,
    settings: Mapping[str, Any] | None = None,
    credit: pd.DataFrame | None = None,
) -> list[Section]:
    """Sections for a sweep's ``cells`` (and ``credit``) tables (see
    :class:`crowdtune.crowd.simulation.sweep.SweepResult`).

    Raises ``ValueError`` naming the missing columns when ``cells`` lacks any of ``CELL_COLUMNS``.
    """
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"sweep cells table lacks columns: {', '.join(missing)}")
    columns = list(CELL_COLUMNS) + (["scheme"] if "scheme" in cells else [])
    table = cells[columns].rename(
        columns={
            "final_distance_mean": "final distance",
            "final_distance_ci_low": "95% CI low",
            "final_distance_ci_high": "95% CI high",
            "reached_threshold": "share reaching threshold",
        }
    )
    sections = [
        _curves(cells),
        Section(
            "Every cell",
            paragraph("One row per setting: mean final distance over the runs with its 95% CI.")
            + table_html(table, float_format="{:.3f}"),
        ),
    ]
    if credit is not None:
        sections.append(
            Section(
                "Credit against Shapley values",
                paragraph(
                    "How well each point scheme's final points track each run's Shapley values "
                    "of the centroid game: mean Spearman and Pearson correlation across runs "
                    "(Fisher z) with 95% CIs, against the accurate estimate and against the "
                    "published KernelSHAP estimate (reference 'kernel')."
                )
                + table_html(credit, float_format="{:.3f}"),
            )
        )
    if settings:
        frame = pd.DataFrame(
            {"setting": list(settings), "value": [str(v) for v in settings.values()]}
        )
        sections.append(Section("Sweep settings", table_html(frame)))
    return sections
