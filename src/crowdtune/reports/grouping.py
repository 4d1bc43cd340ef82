"""Report sections for the grouping simulation (Crowd-SFT rounds with the model as a point).

The simulation side computes every number; this module only lays them out. It takes the tidy
tables a sweep of seeded runs produces (per-round distance bands, one row per run, final points
per user) plus one :class:`~crowdtune.crowd.simulation.trace.RunTrace` per strategy, and returns
:class:`~crowdtune.reports.html.Section` objects for :func:`~crowdtune.reports.html.render_report`.
The last section, the PCA view of the traced runs, comes from :mod:`crowdtune.reports.grouping_pca`.

Usage (``result`` from :func:`crowdtune.crowd.simulate_grouping`)::

    sections = grouping_sections(bands=distance_bands(result.rounds), runs=result.runs,
                                 points=result.points, traces=result.traces,
                                 summary=result.summary())
    render_report("out/index.html", title="Grouping", sections=sections)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.reports.grouping_pca import TITLE as PCA_TITLE
from crowdtune.reports.grouping_pca import check_trace, chosen_rounds, pca_section
from crowdtune.reports.html import (
    Section,
    figure_to_img,
    mpl_text,
    paragraph,
    style_axes,
    table_html,
)

__all__ = ["grouping_sections", "strategy_colors"]

DISTANCE_LABEL = "L2 distance to expert"
MAX_JITTER_POINTS = 1500  # per strategy; more dots only hide each other

TITLES = {
    "summary": "Grouping strategies at a glance",
    "distance": "Distance to the expert by round",
    "final": "Final distance to the expert",
    "points": "How points are shared",
    "pca": PCA_TITLE,
}


def strategy_colors(strategies: Iterable[str]) -> dict[str, str]:
    """Return one colour per strategy, in order, from matplotlib's ``tab10`` palette.

    Parameters
    ----------
    strategies : iterable of str
        Strategy names in the order they should be coloured; duplicates are ignored.

    Returns
    -------
    dict of str to str
        Hex colour per strategy (the palette repeats after ten strategies).
    """
    palette = [mpl.colors.to_hex(c) for c in mpl.colormaps["tab10"].colors]  # type: ignore[attr-defined]
    names = list(dict.fromkeys(strategies))
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _require(df: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; expected at least {list(columns)}, "
            f"got {list(df.columns)}"
        )


def _strategy_order(
    summary: Mapping[str, Any], frames: Sequence[pd.DataFrame], traces: Mapping[str, RunTrace]
) -> list[str]:
    names = [str(k) for k in summary if k != "settings"]
    for frame in frames:
        names += [str(s) for s in frame["strategy"].drop_duplicates()]
    names += [str(s) for s in traces]
    return list(dict.fromkeys(names))


def _finite(value: Any) -> bool:
    try:
        return value is not None and value is not pd.NA and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _ci_text(stats: Mapping[str, Any] | None, digits: int, missing: str = "—") -> str:
    """Format ``{"mean", "ci_low", "ci_high"}`` as ``mean [low, high]``."""
    if not stats or not _finite(stats.get("mean")):
        return missing
    text = f"{float(stats['mean']):.{digits}f}"
    if _finite(stats.get("ci_low")) and _finite(stats.get("ci_high")):
        text += f" [{float(stats['ci_low']):.{digits}f}, {float(stats['ci_high']):.{digits}f}]"
    return text


def _summary_section(
    order: Sequence[str], runs: pd.DataFrame, summary: Mapping[str, Any], threshold: float
) -> Section:
    rows = []
    for strategy in order:
        stats = summary.get(strategy, {})
        mine = runs[runs["strategy"].astype(str) == strategy]
        n_runs = int(stats.get("runs", len(mine))) if stats else len(mine)
        reached = int(mine["rounds_to_threshold"].notna().sum())
        share = f"{reached} of {len(mine)} ({reached / len(mine):.0%})" if len(mine) else "—"
        metrics = ", ".join(str(m) for m in mine["metric"].drop_duplicates()) or "—"
        rows.append(
            {
                "Strategy": strategy,
                "Metric": metrics,
                "Runs": n_runs,
                "Start distance [95% CI]": _ci_text(stats.get("start_distance"), 2),
                "Final distance [95% CI]": _ci_text(stats.get("final_distance"), 2),
                "Rounds to threshold [95% CI]": _ci_text(
                    stats.get("rounds_to_threshold"), 1, missing="never reached"
                ),
                "Runs reaching threshold": share,
            }
        )
    body = paragraph(
        "Each row sums up all seeded runs of one grouping strategy. Distances are L2 distances "
        "from the model to the expert in genre space (lower is better), as a mean over runs with "
        "its 95% confidence interval in brackets. “Rounds to threshold” is the number of rounds "
        f"until the model first came within {threshold:g} of the expert, averaged over the runs "
        "that got there; the last column says how many runs did."
    ) + table_html(pd.DataFrame(rows))
    settings = summary.get("settings")
    if settings:
        frame = pd.DataFrame(
            {"Setting": list(settings), "Value": [_setting_text(v) for v in settings.values()]}
        )
        body += "<h3>Run settings</h3>" + table_html(frame)
    return Section(TITLES["summary"], body)


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_setting_text(v) for v in value)
    return str(value)


def _distance_section(
    order: Sequence[str], bands: pd.DataFrame, colors: Mapping[str, str], threshold: float
) -> Section:
    fig = Figure(figsize=(9.5, 5.0), layout="constrained")
    ax = fig.subplots()
    for strategy in order:
        band = bands[bands["strategy"].astype(str) == strategy].sort_values("round")
        if band.empty:
            continue
        x = band["round"].to_numpy(dtype=float)
        ax.fill_between(
            x,
            band["ci_low"].to_numpy(dtype=float),
            band["ci_high"].to_numpy(dtype=float),
            color=colors[strategy],
            alpha=0.18,
            linewidth=0,
        )
        ax.plot(
            x,
            band["mean"].to_numpy(dtype=float),
            color=colors[strategy],
            linewidth=2.2,
            label=mpl_text(strategy),
        )
    ax.axhline(
        threshold, color="0.25", linestyle="--", linewidth=1.3, label=f"threshold ({threshold:g})"
    )
    ax.set(
        xlabel="Round (0 = start)",
        ylabel=DISTANCE_LABEL,
        title="Mean distance to the expert, with 95% confidence bands",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    style_axes(ax)
    ax.legend(title="Strategy", frameon=False)
    body = (
        paragraph(
            "How fast each strategy brings the model towards the expert. Each line is the mean "
            "distance over all runs after each round (round 0 is the starting model); the shaded "
            "band is its 95% confidence interval, so where two bands do not overlap the strategies "
            "differ by more than run-to-run noise. The dashed line is the threshold used for "
            "“rounds to threshold”. A line that goes flat means no group's candidate improved on "
            "the model any more."
        )
        + f"<figure>{figure_to_img(fig, 'Line chart: ' + DISTANCE_LABEL + ' by round')}</figure>"
    )
    return Section(TITLES["distance"], body)


def _box_with_dots(
    ax: Axes, values: Sequence[np.ndarray], colors: Sequence[str], labels: Sequence[str]
) -> None:
    """Draw one box per group with its values as jittered dots on top."""
    rng = np.random.default_rng(0)  # fixed jitter, so the same data always draws the same
    positions = np.arange(1, len(values) + 1)
    boxes = ax.boxplot(
        values,
        positions=positions,
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        tick_labels=[mpl_text(s) for s in labels],
        medianprops={"color": "black", "linewidth": 1.5},
    )
    for patch, color in zip(boxes["boxes"], colors, strict=True):
        patch.set(facecolor=mpl.colors.to_rgba(color, 0.25), edgecolor=color, linewidth=1.4)
    for position, data, color in zip(positions, values, colors, strict=True):
        if len(data) > MAX_JITTER_POINTS:
            data = rng.choice(data, MAX_JITTER_POINTS, replace=False)
        x = position + rng.uniform(-0.2, 0.2, len(data))
        size = 16 if len(data) <= 200 else 6
        ax.scatter(x, data, s=size, color=color, alpha=0.6, linewidths=0, zorder=3)


def _final_section(
    order: Sequence[str], runs: pd.DataFrame, colors: Mapping[str, str], threshold: float
) -> Section:
    present = [s for s in order if (runs["strategy"].astype(str) == s).any()]
    values = [
        runs.loc[runs["strategy"].astype(str) == s, "final_distance"].dropna().to_numpy(float)
        for s in present
    ]
    if not any(len(v) for v in values):
        return Section(TITLES["final"], paragraph("No runs with a final distance to show."))
    fig = Figure(figsize=(max(6.0, 1.8 * len(present) + 3), 4.8), layout="constrained")
    ax = fig.subplots()
    _box_with_dots(ax, values, [colors[s] for s in present], present)
    ax.axhline(
        threshold, color="0.25", linestyle="--", linewidth=1.3, label=f"threshold ({threshold:g})"
    )
    ax.set(xlabel="Strategy", ylabel=DISTANCE_LABEL, title="Final distance to the expert, per run")
    highest = max([threshold, *(float(v.max()) for v in values if len(v))])
    ax.set_ylim(0, 1.15 * highest)
    style_axes(ax)
    ax.legend(frameon=False, loc="upper right", ncol=1)
    body = (
        paragraph(
            "Where the runs of each strategy end up. Every dot is one seeded run's final distance "
            "to the expert; the box spans the middle half of the runs with the median as a black "
            "line, and the whiskers reach the furthest run within 1.5 box-lengths. A low, narrow "
            "box means a strategy gets close to the expert reliably; a tall one means the outcome "
            "depends on luck. The dashed line is the threshold."
        )
        + f"<figure>{figure_to_img(fig, f'Box plots of final {DISTANCE_LABEL} per run')}</figure>"
    )
    return Section(TITLES["final"], body)


def _points_section(
    order: Sequence[str], points: pd.DataFrame, colors: Mapping[str, str]
) -> Section:
    frame = points[["strategy", "run", "user", "points"]].copy()
    frame["strategy"] = frame["strategy"].astype(str)
    frame["points"] = frame["points"].astype(float)
    totals = frame.groupby(["strategy", "run"])["points"].transform("sum")
    frame["share"] = 100 * frame["points"] / totals.where(totals > 0)
    empty_runs = frame.loc[frame["share"].isna(), ["strategy", "run"]].drop_duplicates()
    frame = frame.dropna(subset=["share"])
    present = [s for s in order if (frame["strategy"] == s).any()]
    if not present:
        return Section(TITLES["points"], paragraph("No run handed out any points."))

    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    ax_box, ax_lorenz = fig.subplots(1, 2, width_ratios=[1.1, 1])
    shares = [frame.loc[frame["strategy"] == s, "share"].to_numpy() for s in present]
    _box_with_dots(ax_box, shares, [colors[s] for s in present], present)
    users_per_run = frame.groupby(["strategy", "run"]).size().unique()
    if len(users_per_run) == 1:
        ax_box.axhline(
            100 / users_per_run[0],
            color="0.25",
            linestyle="--",
            linewidth=1.3,
            label=f"equal share (1/{users_per_run[0]})",
        )
        ax_box.legend(frameon=False, loc="upper right")
    ax_box.set(
        xlabel="Strategy",
        ylabel="User's share of the run's points (%)",
        title="Each user's share of their run's points",
    )
    style_axes(ax_box)

    grid = np.linspace(0, 1, 101)
    for strategy in present:
        curves = [
            np.interp(
                grid,
                np.linspace(0, 1, len(run) + 1),
                np.concatenate([[0.0], np.cumsum(np.sort(run)) / run.sum()]),
            )
            for _, run in frame.loc[frame["strategy"] == strategy].groupby("run")["share"]
        ]
        ax_lorenz.plot(
            100 * grid,
            100 * np.mean(curves, axis=0),
            color=colors[strategy],
            linewidth=2.2,
            label=mpl_text(strategy),
        )
    ax_lorenz.plot(
        [0, 100], [0, 100], color="0.25", linestyle="--", linewidth=1.3, label="equal shares"
    )
    ax_lorenz.set(
        xlabel="Users, fewest points first (%)",
        ylabel="Share of all points (%)",
        title="Concentration of points (Lorenz curve, mean over runs)",
        xlim=(0, 100),
        ylim=(0, 100),
        aspect="equal",
    )
    style_axes(ax_lorenz)
    ax_lorenz.legend(title="Strategy", frameon=False, loc="upper left")

    text = (
        "Who earns the points. Runs differ in how many points they hand out, so each user's "
        "final points are shown as a percentage of their run's total, which makes runs and "
        "strategies comparable. Left: every dot is one user in one run (at most "
        f"{MAX_JITTER_POINTS:,} dots per strategy are drawn; the boxes use all users); the "
        "dashed line is what everyone would get if points were shared equally. Right: the "
        "Lorenz curve, averaged over runs, says which share of all points the poorest x% of "
        "users hold; the further a curve sags below the diagonal, the more the points "
        "concentrate on few users."
    )
    body = paragraph(text)
    if len(empty_runs):
        body += paragraph(
            f"{len(empty_runs)} run(s) handed out no points at all and are left out.",
            css_class="note",
        )
    body += f"<figure>{figure_to_img(fig, 'Distributions of users’ shares of points')}</figure>"
    return Section(TITLES["points"], body)


def grouping_sections(
    *,
    bands: pd.DataFrame,
    runs: pd.DataFrame,
    points: pd.DataFrame,
    traces: Mapping[str, RunTrace],
    summary: Mapping[str, Any],
    threshold: float = 5.0,
    pca_rounds: Sequence[int] | None = None,
) -> list[Section]:
    """Build the report sections for a sweep of the grouping simulation.

    Parameters
    ----------
    bands : pandas.DataFrame
        Columns ``strategy, round, mean, ci_low, ci_high``: the mean L2 distance to the expert
        after each round (round 0 = start) with its 95% confidence interval.
    runs : pandas.DataFrame
        One row per run with at least ``strategy, metric, run, start_distance,
        final_distance, rounds_to_threshold`` (nullable; NA when never reached) and
        ``improving_rounds``.
    points : pandas.DataFrame
        Columns ``strategy, run, user, points``: every user's final points in every run.
    traces : mapping of str to RunTrace
        One traced run per strategy, keyed by strategy name.
    summary : mapping
        ``{strategy: {"start_distance": {"mean", "ci_low", "ci_high"}, "final_distance": {...},
        "rounds_to_threshold": {"mean", "ci_low", "ci_high", "reached"}, "runs": int}}``, and
        optionally ``"settings"``, a flat dict of run settings shown as a table.
    threshold : float, default=5.0
        The distance that counts as "close to the expert" (drawn as a dashed line).
    pca_rounds : sequence of int, optional
        Round numbers (1 = after the first round) to draw in the PCA view; by default the
        first, middle and last round.

    Returns
    -------
    list of Section
        Summary table, distance by round, final distances, points, and PCA views, in order.

    Raises
    ------
    ValueError
        If a table lacks a column, a trace's arrays disagree in shape, or a PCA round is out
        of range.
    """
    _require(bands, "bands", ["strategy", "round", "mean", "ci_low", "ci_high"])
    _require(
        runs,
        "runs",
        [
            "strategy",
            "metric",
            "run",
            "start_distance",
            "final_distance",
            "rounds_to_threshold",
            "improving_rounds",
        ],
    )
    _require(points, "points", ["strategy", "run", "user", "points"])
    for name, trace in traces.items():  # fail before any drawing
        check_trace(name, trace)
    rounds = {name: chosen_rounds(name, t.n_rounds, pca_rounds) for name, t in traces.items()}
    order = _strategy_order(summary, [bands, runs, points], traces)
    if not order:
        raise ValueError("no strategies: summary, bands, runs, points and traces are all empty")
    colors = strategy_colors(order)
    return [
        _summary_section(order, runs, summary, threshold),
        _distance_section(order, bands, colors, threshold),
        _final_section(order, runs, colors, threshold),
        _points_section(order, points, colors),
        pca_section(order, traces, colors, rounds),
    ]
