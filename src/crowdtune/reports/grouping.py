"""Report sections for the grouping simulation (Crowd-SFT rounds with the model as a point).

The simulation side computes every number; this module only lays them out. It takes the tidy
tables a sweep of seeded runs produces (per-round distance bands, one row per run, final points
per user) plus one :class:`~crowdtune.crowd.simulation.trace.RunTrace` per strategy, and returns
:class:`~crowdtune.reports.html.Section` objects for :func:`~crowdtune.reports.html.render_report`.

Usage (``result`` from :func:`crowdtune.crowd.simulate_grouping`)::

    sections = grouping_sections(bands=distance_bands(result.rounds), runs=result.runs,
                                 points=result.points, traces=result.traces,
                                 summary=result.summary())
    render_report("out/index.html", title="Grouping", sections=sections)
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["grouping_sections", "pca_of_trace", "strategy_colors"]

DISTANCE_LABEL = "L2 distance to expert"
MAX_JITTER_POINTS = 1500  # per strategy; more dots only hide each other

TITLES = {
    "summary": "Grouping strategies at a glance",
    "distance": "Distance to the expert by round",
    "final": "Final distance to the expert",
    "points": "How points are shared",
    "pca": "Traced runs in genre space (PCA)",
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


def _mpl(text: str) -> str:
    """Escape text for matplotlib, which would otherwise read ``$...$`` as math."""
    return str(text).replace("$", r"\$")


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


def _style(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


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
            label=_mpl(strategy),
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
    _style(ax)
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
        tick_labels=[_mpl(s) for s in labels],
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
    _style(ax)
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
    _style(ax_box)

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
            label=_mpl(strategy),
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
    _style(ax_lorenz)
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


def _check_trace(name: str, trace: RunTrace) -> None:
    n_users, n_dims = trace.users.shape
    n_rounds = trace.n_rounds
    expected = {
        "expert": (trace.expert.shape, (n_dims,)),
        "model_path": (trace.model_path.shape, (n_rounds + 1, n_dims)),
        "groups": (trace.groups.shape, (n_rounds, n_users)),
        "chosen": (trace.chosen.shape, (n_rounds,)),
    }
    for field, (got, want) in expected.items():
        if tuple(got) != want:
            raise ValueError(f"trace {name!r}: {field} has shape {tuple(got)}, expected {want}")
    if n_rounds < 1 or n_dims < 2:
        raise ValueError(
            f"trace {name!r} needs at least 1 round and 2 dimensions to draw, "
            f"got {n_rounds} round(s) and {n_dims} dimension(s)"
        )


def _chosen_rounds(name: str, n_rounds: int, pca_rounds: Sequence[int] | None) -> list[int]:
    if pca_rounds is None:
        return sorted({1, (n_rounds + 1) // 2, n_rounds})
    bad = [r for r in pca_rounds if not 1 <= int(r) <= n_rounds]
    if bad or not pca_rounds:
        raise ValueError(
            f"pca_rounds must be round numbers from 1 to {n_rounds} for trace {name!r}, "
            f"got {list(pca_rounds)}"
        )
    return sorted({int(r) for r in pca_rounds})


def _group_colors(n_groups: int) -> list[tuple[float, float, float, float]]:
    if n_groups <= 8:
        return [mpl.colormaps["Dark2"](i) for i in range(n_groups)]
    if n_groups <= 20:
        return [mpl.colormaps["tab20"](i) for i in range(n_groups)]
    return [mpl.colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n_groups)]


def pca_of_trace(trace: RunTrace) -> PCA:
    """Return the two-component PCA fitted on a trace's users and expert.

    Parameters
    ----------
    trace : RunTrace
        The traced run.

    Returns
    -------
    sklearn.decomposition.PCA
        Fitted on ``vstack([users, expert])``; ``explained_variance_ratio_`` gives the shares.
    """
    return PCA(n_components=2).fit(np.vstack([trace.users, trace.expert[None, :]]))


def _pca_figure(name: str, trace: RunTrace, rounds: Sequence[int], color: str, pca: PCA) -> Figure:
    users = pca.transform(trace.users)
    expert = pca.transform(trace.expert[None, :])[0]
    path = pca.transform(trace.model_path)
    n_groups = int(trace.groups.max()) + 1
    group_colors = _group_colors(n_groups)
    dot_size = float(np.clip(5000 / len(users), 9, 36))
    share = 100 * pca.explained_variance_ratio_

    fig = Figure(figsize=(3.6 * len(rounds) + 0.6, 4.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(rounds), sharex=True, sharey=True, squeeze=False)[0])
    for ax, k in zip(axes, rounds, strict=True):
        groups, winner = trace.groups[k - 1], int(trace.chosen[k - 1])
        ax.scatter(
            users[:, 0],
            users[:, 1],
            s=dot_size,
            linewidths=0,
            alpha=0.85,
            c=[group_colors[g] for g in groups],
            zorder=2,
        )
        if winner >= 0:
            won = groups == winner
            ax.scatter(
                users[won, 0],
                users[won, 1],
                s=dot_size * 2.4,
                facecolors="none",
                edgecolors="black",
                linewidths=0.9,
                zorder=3,
            )
        ax.plot(path[k:, 0], path[k:, 1], color="0.6", linewidth=1, linestyle=":", zorder=4)
        ax.plot(
            path[: k + 1, 0],
            path[: k + 1, 1],
            color=color,
            linewidth=2,
            marker="o",
            markersize=3.5,
            zorder=5,
        )
        ax.plot(
            *path[0],
            marker="s",
            markersize=9,
            color="white",
            markeredgecolor=color,
            markeredgewidth=2,
            zorder=6,
        )
        ax.plot(*path[k], marker="o", markersize=10, color=color, markeredgecolor="black", zorder=6)
        ax.plot(*expert, marker="*", markersize=20, color="gold", markeredgecolor="black", zorder=7)
        outcome = f"group {winner + 1} won" if winner >= 0 else "no candidate improved"
        ax.set_title(f"After round {k} of {trace.n_rounds}:\n{outcome}", fontsize=10.5)
        ax.set_xlabel(f"PC1 ({share[0]:.1f}% of variance)")
        _style(ax)
    axes[0].set_ylabel(f"PC2 ({share[1]:.1f}% of variance)")

    handles: list[Line2D] = []
    if n_groups <= 12:
        handles += [
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=7,
                color=group_colors[g],
                label=f"group {g + 1}",
            )
            for g in range(n_groups)
        ]
    else:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=7,
                color="0.5",
                label=f"users (colour = group, {n_groups} groups)",
            )
        )
    handles += [
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=9,
            markerfacecolor="none",
            markeredgecolor="black",
            label="winning group",
        ),
        Line2D(
            [],
            [],
            marker="*",
            linestyle="",
            markersize=14,
            color="gold",
            markeredgecolor="black",
            label="expert",
        ),
        Line2D(
            [],
            [],
            marker="s",
            linestyle="",
            markersize=8,
            color="white",
            markeredgecolor=color,
            markeredgewidth=2,
            label="model start",
        ),
        Line2D([], [], marker="o", color=color, linewidth=2, markersize=4, label="model path"),
        Line2D([], [], color="0.6", linestyle=":", label="path in later rounds"),
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(f"Strategy {_mpl(name)} ({_mpl(trace.metric)}): one traced run", fontsize=13)
    return fig


def _pca_section(
    order: Sequence[str],
    traces: Mapping[str, RunTrace],
    colors: Mapping[str, str],
    rounds_by_strategy: Mapping[str, list[int]],
) -> Section:
    body = paragraph(
        "One seeded run per strategy, drawn in two dimensions. Genre space has more dimensions "
        "than a page, so each run is projected onto the two directions along which the users "
        "and the expert vary most (a principal component analysis fitted on them); the share "
        "of the variance those two directions keep is given for each run, and the rest is "
        "hidden, so points that look close may still be apart. Each panel shows the state "
        "after one round: a dot is a user coloured by the group they were put in that round "
        "(groups numbered from 1), black rings mark the group whose candidate became the "
        "model, the gold star is the expert, the coloured line is the model's path so far "
        "from its start (square) to its current place (large dot), and the dotted grey line "
        "is the path still to come."
    )
    for name in [s for s in order if s in traces]:
        trace, rounds = traces[name], rounds_by_strategy[name]
        pca = pca_of_trace(trace)
        share = 100 * pca.explained_variance_ratio_
        moved = int((trace.chosen >= 0).sum())
        fig = _pca_figure(name, trace, rounds, colors[name], pca)
        body += (
            f"<h3>{html.escape(name)}</h3>"
            + paragraph(
                f"Metric {trace.metric}; {trace.users.shape[0]} users in "
                f"{int(trace.groups.max()) + 1} groups over {trace.n_rounds} rounds, in "
                f"{trace.users.shape[1]} dimensions. The model moved in {moved} of "
                f"{trace.n_rounds} rounds. The two components explain {share.sum():.1f}% of the "
                f"variance of the users and the expert (PC1 {share[0]:.1f}%, PC2 {share[1]:.1f}%)."
            )
            + "<figure>"
            + figure_to_img(
                fig, f"PCA view of one {name} run after rounds {', '.join(map(str, rounds))}"
            )
            + "</figure>"
        )
    return Section(TITLES["pca"], body)


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
        _check_trace(name, trace)
    rounds = {name: _chosen_rounds(name, t.n_rounds, pca_rounds) for name, t in traces.items()}
    order = _strategy_order(summary, [bands, runs, points], traces)
    if not order:
        raise ValueError("no strategies: summary, bands, runs, points and traces are all empty")
    colors = strategy_colors(order)
    return [
        _summary_section(order, runs, summary, threshold),
        _distance_section(order, bands, colors, threshold),
        _final_section(order, runs, colors, threshold),
        _points_section(order, points, colors),
        _pca_section(order, traces, colors, rounds),
    ]
