"""Report sections for the linguistic distribution analysis of two text sets.

Lays out a :class:`~crowdtune.curation.distribution.DistributionComparison` (and, where there
are scores, a :class:`~crowdtune.curation.distribution.ScoreAgreement`): the main features of both
sets side by side, the POS distributions, the per-feature tests, the divergences and the
mismatch counts. It computes nothing beyond the histogram bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crowdtune.curation.distribution import (
    MAIN_FEATURES,
    DistributionComparison,
    ScoreAgreement,
)
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["distribution_sections"]

_COLORS = ("#4c72b0", "#dd8452")


def _finite(frame: pd.DataFrame, feature: str) -> np.ndarray:
    values = frame.loc[~frame["empty"].astype(bool), feature].to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _features_section(c: DistributionComparison, train_label: str, test_label: str) -> Section:
    features = [f for f in MAIN_FEATURES if f in c.train_features.columns]
    cols = 4
    rows = -(-len(features) // cols)
    fig = Figure(figsize=(3.0 * cols, 2.3 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, feature in zip(axes, features, strict=False):
        a, b = _finite(c.train_features, feature), _finite(c.test_features, feature)
        both = np.concatenate([a, b])
        if len(both) == 0:
            ax.set_title(f"{feature} (no values)", fontsize=9)
            continue
        low, high = np.quantile(both, [0.005, 0.995])  # keep a long tail from flattening the rest
        bins = np.linspace(low, high if high > low else low + 1, 31)
        for values, label, color in ((a, train_label, _COLORS[0]), (b, test_label, _COLORS[1])):
            if len(values):
                ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, density=True, alpha=0.5,
                        color=color, label=label)  # fmt: skip
        ax.set_title(feature, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(features) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    text = paragraph(
        f"The main features of each text, {train_label} (blue) against {test_label} (orange), as "
        "densities (empty texts left out; values beyond the 0.5% and 99.5% quantiles are drawn in "
        "the edge bins). Sentence lengths and counts come from spaCy's rule-based sentencizer, "
        "POS shares from en_core_web_sm's tagger, sentiment from VADER (compound, -1 to 1), "
        "repetition is the share of repeated word trigrams."
    )
    return Section("Feature distributions", text + figure_to_img(fig, "feature histograms"))


def _pos_section(c: DistributionComparison, train_label: str, test_label: str) -> Section:
    pos = c.pos_distribution
    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(pos))
    ax.bar(x - 0.2, pos["train_share"], 0.4, label=train_label, color=_COLORS[0])
    ax.bar(x + 0.2, pos["test_share"], 0.4, label=test_label, color=_COLORS[1])
    ax.set_xticks(x, pos["tag"], fontsize=8)
    ax.set_ylabel("share of tokens")
    ax.legend(fontsize=8)
    rows = []
    for key, result in c.jsd.items():
        rows.append({
            "distribution": key, "JSD (base 2)": result.jsd,
            "bias-corrected": result.jsd_corrected, "95% CI low": result.low,
            "95% CI high": result.high, "permutation mean": result.null_mean,
            "permutation 95%": result.null_q95, "p": result.p_value,
            "categories": result.n_categories,
        })  # fmt: skip
    text = paragraph(
        "Pooled universal POS tags of each set. The table gives the Jensen-Shannon divergence of "
        "the pooled POS and lemma distributions (0 = identical, 1 = disjoint); finite samples "
        "bias it upward, so a bootstrap bias-corrected value follows, with its 95% basic "
        "bootstrap interval (texts resampled within each set), and the divergence expected by "
        "chance: its mean and 95% quantile when the texts are assigned to the two sets at random. "
        "A divergence within that range is no evidence of a difference."
    )
    body = (
        text
        + figure_to_img(fig, "POS shares")
        + table_html(pd.DataFrame(rows), float_format="{:.4g}")
    )
    if len(c.top_lemmas):
        body += paragraph("The lemmas that contribute most to the lemma divergence:")
        body += table_html(c.top_lemmas, float_format="{:.4f}")
    return Section("Part-of-speech and lemma distributions", body)


def _tests_section(c: DistributionComparison) -> Section:
    columns = {
        "feature": "feature", "train_mean": "train mean", "test_mean": "test mean",
        "ks_statistic": "KS D", "ks_p_adjusted": "KS p (BH)",
        "mannwhitney_p_adjusted": "MW p (BH)",
        "cliffs_delta": "Cliff's delta", "cliffs_delta_low": "delta low",
        "cliffs_delta_high": "delta high", "smd": "SMD (d)", "smd_low": "d low",
        "smd_high": "d high",
    }  # fmt: skip
    shown = c.tests[list(columns)].rename(columns=columns)
    text = paragraph(
        "Each feature tested between the sets: two-sided Kolmogorov-Smirnov and Mann-Whitney U, "
        "p-values adjusted by Benjamini-Hochberg over the features. Effect sizes are test against "
        "train with 95% intervals: Cliff's delta (the rank-biserial correlation, -1 to 1) and the "
        "standardized mean difference (Cohen's d, pooled SD). With thousands of texts tiny "
        "differences are significant; read the effect sizes."
    )
    return Section("Tests per feature", text + table_html(shown, float_format="{:.3g}"))


def _mismatch_section(c: DistributionComparison, test_label: str) -> Section:
    summary = c.to_dict()["mismatch"]
    counts = c.counts()
    rows = pd.DataFrame([
        {"flag": "any feature outside train mean ± 1.96 SD (published)",
         "test texts flagged": summary["rule_count"], "test rate": summary["rule_rate"],
         "rate on train texts": summary["rule_rate_on_train"]},
        {"flag": "Mahalanobis d² > chi² 95% quantile",
         "test texts flagged": summary["mahalanobis_count"],
         "test rate": summary["mahalanobis_rate"],
         "rate on train texts": summary["mahalanobis_rate_on_train"]},
    ])  # fmt: skip
    by_feature = pd.DataFrame(
        list(summary["rule_count_by_feature"].items()), columns=["feature (+ above, - below)",
                                                                  "test texts"]
    )  # fmt: skip
    text = paragraph(
        f"{test_label} texts outside the training distribution, among the {summary['n_tested']:,} "
        f"non-empty ones (empty texts: {counts['n_train_empty']:,} of {counts['n_train']:,} in "
        f"train, {counts['n_test_empty']:,} of {counts['n_test']:,} in test; they are counted, "
        f"not tested). Features checked: {', '.join(c.rule_features)}. The rate on the train "
        "texts themselves is each flag's false-alarm rate: checking many features one by one "
        "flags far more than 5% of texts from the training distribution itself."
    )
    return Section(
        "Mismatched test texts",
        text + table_html(rows, float_format="{:.3f}") + table_html(by_feature),
    )


def _scores_section(agreement: ScoreAgreement) -> Section:
    rows = []
    for group, methods in agreement.correlations.items():
        for method, result in methods.items():
            rows.append({
                "texts": group, "method": method,
                "estimate": None if result is None else result.estimate,
                "95% CI low": None if result is None else result.low,
                "95% CI high": None if result is None else result.high,
                "n": None if result is None else result.n,
            })  # fmt: skip
    diffs = pd.DataFrame(
        [{"score": name, **values} for name, values in agreement.differences.items()]
    )
    text = paragraph(
        f"Agreement of reward-model and human scores on {agreement.n:,} test texts "
        f"({agreement.n_matched:,} matched, {agreement.n_mismatched:,} mismatched by the "
        "published rule), with 95% bootstrap intervals; then whether each score differs between "
        "mismatched and matched texts (Mann-Whitney, Cliff's delta: positive = higher on "
        "mismatched texts)."
    )
    return Section(
        "Reward and human scores",
        text + table_html(pd.DataFrame(rows)) + table_html(diffs, float_format="{:.3g}"),
    )


def distribution_sections(
    comparison: DistributionComparison,
    train_label: str,
    test_label: str,
    agreement: ScoreAgreement | None = None,
) -> list[Section]:
    """Feature histograms, POS bars and divergences, tests, mismatch counts, score agreement."""
    sections = [
        _features_section(comparison, train_label, test_label),
        _pos_section(comparison, train_label, test_label),
        _tests_section(comparison),
        _mismatch_section(comparison, test_label),
    ]
    if agreement is not None:
        sections.append(_scores_section(agreement))
    return sections
