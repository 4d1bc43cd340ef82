"""Report section for credit: each point scheme's final points against accurate Shapley values.

Takes a :class:`crowdtune.crowd.simulation.credit.CreditComparison` and lays it out; it computes
nothing.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from crowdtune.crowd.simulation.credit import CreditComparison
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["credit_sections"]


def credit_sections(comparison: CreditComparison, *, run: int = 0) -> list[Section]:
    """A scatter of points vs Shapley values per scheme (run ``run``) and the correlation table."""
    schemes = list(comparison.points)
    summary = comparison.summary.set_index("scheme")
    fig = Figure(figsize=(3.2 * len(schemes), 3.2), layout="constrained")
    axes = fig.subplots(1, len(schemes), squeeze=False)[0]
    for ax, scheme in zip(axes, schemes, strict=True):
        ax.scatter(comparison.shapley[run], comparison.points[scheme][run], s=10, alpha=0.7)
        row = summary.loc[scheme]
        ax.set_title(
            f"{scheme}\nSpearman {row['spearman']:.2f} "
            f"[{row['spearman_low']:.2f}, {row['spearman_high']:.2f}]",
            fontsize=9,
        )
        ax.set_xlabel("Shapley value")
    axes[0].set_ylabel("final points")
    text = paragraph(
        f"Each panel: the final points of every user of run {run} under one point scheme (y) "
        "against that user's Shapley value in the run's centroid game (x): how much the user's "
        "vector brings a coalition's mean toward the expert, estimated by crowdtune's permutation "
        "sampler. Titles and the table: mean correlation over "
        f"{comparison.shapley.shape[0]} seeded runs (same crowds for every scheme), averaged on "
        "Fisher's z scale, with 95% CIs. rank is the published scheme; regression and "
        "leave-one-out give each user their own share."
    )
    table = comparison.summary.rename(columns={"runs": "runs used"})
    return [
        Section(
            "Credit: points against Shapley values",
            text + figure_to_img(fig, "points vs Shapley values") + table_html(table),
        )
    ]
