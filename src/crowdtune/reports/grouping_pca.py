"""The grouping report's PCA view: one traced run per strategy, drawn in two dimensions.

Each run (a :class:`~crowdtune.crowd.simulation.trace.RunTrace`) is projected onto the two
principal components of its users and expert; a panel per chosen round shows the groups, the
winning group, the expert and the model's path. :func:`~crowdtune.reports.grouping.
grouping_sections` places the section last.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.decomposition import PCA

from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.reports.html import Section, figure_to_img, mpl_text, paragraph, style_axes

__all__ = ["TITLE", "check_trace", "chosen_rounds", "pca_of_trace", "pca_section"]

TITLE = "Traced runs in genre space (PCA)"


def check_trace(name: str, trace: RunTrace) -> None:
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


def chosen_rounds(name: str, n_rounds: int, pca_rounds: Sequence[int] | None) -> list[int]:
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
        style_axes(ax)
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
    fig.suptitle(
        f"Strategy {mpl_text(name)} ({mpl_text(trace.metric)}): one traced run", fontsize=13
    )
    return fig


def pca_section(
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
    return Section(TITLE, body)
