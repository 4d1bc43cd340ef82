"""Report sections for preference models: the CV table, a reliability diagram, a leaderboard.

Takes the results (a cross-validation table, out-of-fold probabilities, a fitted
:class:`~crowdtune.preference.leaderboard.Leaderboard`) and lays them out; it computes nothing but
the binning of the reliability diagram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crowdtune.preference.leaderboard import Leaderboard
from crowdtune.preference.metrics import UNIFORM_LOG_LOSS, reliability_table
from crowdtune.records import LABELS
from crowdtune.reports.html import Section, figure_to_img, paragraph, table_html

__all__ = ["preference_sections"]


def _cv_section(table: pd.DataFrame, n: int, sources: str) -> Section:
    columns = {
        "model": "model", "scheme": "scheme", "held_out": "held out", "log_loss": "log loss",
        "log_loss_ci_low": "95% CI low", "log_loss_ci_high": "95% CI high",
        "accuracy": "accuracy", "n": "n", "train_pairs_per_s": "train pairs/s",
        "predict_pairs_per_s": "predict pairs/s",
    }  # fmt: skip
    shown = table[list(columns)].rename(columns=columns)
    for rate in ("train pairs/s", "predict pairs/s"):
        shown[rate] = shown[rate].round().astype(int)
    text = paragraph(
        f"Which answer will people prefer: A, B or a tie? {n:,} comparisons from {sources}, each "
        "predicted by a model that never saw it. grouped: 5 folds grouped by prompt. "
        "leave-one-dataset-out: trained on the other datasets, tested on the one named in "
        f"held_out ('all' pools them). Lower log loss is better; guessing 1/3 each scores "
        f"{UNIFORM_LOG_LOSS:.4f}. length and difference-bucket are the baselines; intervals are "
        "95% bootstrap intervals over comparisons."
    )
    return Section(
        "Preferences: predicting A / B / tie", text + table_html(shown, float_format="{:.4g}")
    )


def _reliability_section(y: np.ndarray, proba: np.ndarray, name: str) -> Section:
    fig = Figure(figsize=(7.5, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    pooled = reliability_table(y, proba)
    seen = pooled["count"] > 0
    left.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    left.plot(pooled["mean_predicted"][seen], pooled["observed"][seen], marker="o")
    left.set_xlabel("predicted probability")
    left.set_ylabel("observed frequency")
    left.set_title(f"all classes, ECE {pooled['ece'].iloc[0]:.3f}", fontsize=9)
    for k, label in enumerate(LABELS):
        curve = reliability_table(y, proba, label=k)
        keep = curve["count"] >= 10
        right.plot(curve["mean_predicted"][keep], curve["observed"][keep], marker="o", label=label)
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    right.set_xlabel("predicted probability")
    right.set_title("per class (bins with 10+ rows)", fontsize=9)
    right.legend(fontsize=8)
    text = paragraph(
        f"Reliability of the {name} model's out-of-fold probabilities (grouped CV): when it says "
        "30%, does that outcome happen 30% of the time? Points on the dashed diagonal are "
        "perfectly calibrated. ECE: the mean gap, weighted by how many predictions fall in a bin."
    )
    return Section("Preferences: calibration", text + figure_to_img(fig, "reliability diagram"))


def _leaderboard_section(board: Leaderboard, title: str) -> Section:
    table = board.table.sort_values("rating")
    fig = Figure(figsize=(6.5, 0.45 * len(table) + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(table))
    ax.errorbar(
        table["rating"], y,
        xerr=[table["rating"] - table["ci_low"], table["ci_high"] - table["rating"]],
        fmt="o", capsize=3,
    )  # fmt: skip
    ax.set_yticks(y, table["model"])
    ax.set_xlabel(f"Bradley-Terry rating (Elo scale), {board.n_bootstrap:,} bootstrap draws")
    text = paragraph(
        f"{title}: maximum-likelihood Bradley-Terry ratings from {board.n_battles:,} human votes "
        f"(ties {board.ties}), with 95% bootstrap intervals. Rank = 1 + the number of models whose "
        "interval lies wholly above, as Chatbot Arena ranks."
    )
    shown = board.table[["rank", "model", "rating", "ci_low", "ci_high", "n_battles", "wins",
                         "losses", "ties"]]  # fmt: skip
    return Section(
        f"Leaderboard: {title}",
        text
        + figure_to_img(fig, "ratings with intervals")
        + table_html(shown, float_format="{:.0f}"),
    )


def preference_sections(
    cv_table: pd.DataFrame,
    *,
    n: int,
    sources: str,
    labels: np.ndarray,
    calibrated_proba: np.ndarray,
    calibrated_name: str,
    leaderboard: Leaderboard,
    leaderboard_title: str,
) -> list[Section]:
    """The CV table, the reliability diagram of ``calibrated_proba``, and the leaderboard."""
    return [
        _cv_section(cv_table, n, sources),
        _reliability_section(np.asarray(labels), np.asarray(calibrated_proba), calibrated_name),
        _leaderboard_section(leaderboard, leaderboard_title),
    ]
