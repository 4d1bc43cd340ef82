"""Report sections for curation: quality scorers against the length rule, and a CaR selection.

Takes :func:`crowdtune.curation.scoring.evaluate_on_car` results and a
:class:`crowdtune.curation.select.SelectionResult` and lays them out; it computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crowdtune.curation.select import SelectionResult
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["curation_sections"]


def _scorer_section(evaluations: Mapping[str, Mapping[str, Any]]) -> Section:
    names = list(evaluations)
    rows = [evaluations[n] for n in names]
    fig = Figure(figsize=(6.0, 0.5 * len(names) + 1.3), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))
    acc = np.array([r["accuracy"] for r in rows])
    ax.errorbar(
        acc, y, xerr=[acc - [r["ci_low"] for r in rows], [r["ci_high"] for r in rows] - acc],
        fmt="o", capsize=3,
    )  # fmt: skip
    published = rows[0]["published_iqs_accuracy"]
    ax.axvline(published, color="grey", ls="--", lw=0.8)
    ax.text(published, len(names) - 0.5, " published IQS", fontsize=8, color="grey")
    ax.set_yticks(y, names)
    ax.set_xlabel("pairwise accuracy on the 254 CaR expert test pairs")
    table = pd.DataFrame(
        {
            "scorer": names,
            "accuracy": acc,
            "95% CI low": [r["ci_low"] for r in rows],
            "95% CI high": [r["ci_high"] for r in rows],
            "longer is better (pairs)": [r["n_longer_better"] for r in rows],
            "accuracy there": [r["accuracy_longer_better"] for r in rows],
            "longer is worse (pairs)": [r["n_longer_worse"] for r in rows],
            "accuracy there ": [r["accuracy_longer_worse"] for r in rows],
            "agrees with length": [r["agreement_with_length"] for r in rows],
        }
    )
    text = paragraph(
        "Which of two answers to an Alpaca instruction did an expert write? Scorers are trained "
        "pairwise (Bradley-Terry) on CaR's expert revisions (train, parameters chosen on valid) "
        f"and tested on its 254 test pairs; the published IQS reached {published:.2%}. The length "
        "rule (the longer answer wins) is the baseline: the columns split each scorer's accuracy "
        "by whether the longer answer is the expert's, which shows how much length explains."
    )
    return Section(
        "Curation: instruction quality scorers",
        text + figure_to_img(fig, "scorer accuracies") + table_html(table),
    )


def _selection_section(result: SelectionResult, pool: str) -> Section:
    table = pd.DataFrame(
        [
            {
                "subset": name.replace("_", "-"),
                "items": d["n"],
                "clusters covered": d["clusters_covered"],
                "share of clusters": d["cluster_share"],
                "mean pairwise cosine distance": d["mean_cosine_distance"],
            }
            for name, d in result.diversity.items()
        ]
    )
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    text = paragraph(
        f"CaR selection from {pool} ({len(result.scores):,} items): the top items by quality "
        f"score plus the best item of every k-means cluster (k = {result.k}, on embeddings "
        f"reduced by PCA to {result.pca_dims} dimensions, {result.explained_variance:.0%} of the "
        f"variance), {len(result.indices):,} items in all, beside a random subset and the "
        f"top-scored items alone, each of the same size. Stages: {seconds}."
    )
    return Section("Curation: a diverse high-quality subset", text + table_html(table))


def curation_sections(
    evaluations: Mapping[str, Mapping[str, Any]], selection: SelectionResult, pool: str
) -> list[Section]:
    """Scorer accuracies (``{name: evaluate_on_car(...)}``) and the selection's coverage."""
    return [_scorer_section(evaluations), _selection_section(selection, pool)]
