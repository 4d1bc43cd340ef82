"""Gold accuracy of ratings (a score in the accepted range) and of revisions (towards the
reference), per project and per contributor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from crowdtune.crowd.signals.revisions import require_columns, word_distance
from crowdtune.tables import json_records, jsonable

__all__ = ["GOLD_COLUMNS", "GoldAccuracy", "rating_gold_accuracy", "revision_gold_accuracy"]

#: Columns of :attr:`GoldAccuracy.contributors`, in order (the last one per kind).
GOLD_COLUMNS = ("contributor", "n_gold", "n_correct", "accuracy", "ci_low", "ci_high")


@dataclass(frozen=True)
class GoldAccuracy:
    """How often responses on gold items were right (see :func:`rating_gold_accuracy` and
    :func:`revision_gold_accuracy`).

    Parameters
    ----------
    kind : {"rating", "revision"}
    n_gold : int
        Responses on gold items (all contributors, named or not).
    n_correct : int
        Those that were right.
    accuracy, ci_low, ci_high : float or None
        ``n_correct / n_gold`` with a Wilson interval; ``None`` without gold responses
        (``reason`` says so).
    mean_miss : float or None
        Ratings: mean distance of the score from the accepted range (0 inside it).
    mean_similarity, mean_similarity_original : float or None
        Revisions: mean word similarity (1 - normalised word edit distance) of the revision,
        and of the original answer, to the reference.
    contributors : pandas.DataFrame
        Per named contributor: :data:`GOLD_COLUMNS` plus ``mean_miss`` (ratings) or
        ``mean_similarity`` (revisions).
    """

    kind: str
    n_gold: int
    n_correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    reason: str | None
    contributors: pd.DataFrame
    confidence: float
    mean_miss: float | None = None
    mean_similarity: float | None = None
    mean_similarity_original: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with the contributors table as a list of rows."""
        out = {k: v for k, v in self.__dict__.items() if k != "contributors"}
        out["contributors"] = json_records(self.contributors)
        return jsonable(out)


def _wilson(correct: np.ndarray, n: np.ndarray, confidence: float) -> tuple[Any, Any]:
    low, high = proportion_confint(correct, np.maximum(n, 1), 1 - confidence, method="wilson")
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def _gold(
    kind: str,
    contributor: pd.Series,
    correct: np.ndarray,
    extra: dict[str, np.ndarray],
    confidence: float,
) -> GoldAccuracy:
    """Totals and the per-contributor table of gold outcomes (``extra``: name → value per row,
    the first one also a column of the table)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    n, k = len(correct), int(np.sum(correct))
    per_row = pd.DataFrame({"contributor": contributor.to_numpy(), "correct": correct, **extra})
    column = next(iter(extra))
    named = per_row.dropna(subset=["contributor"]).astype({"contributor": str})
    table = named.groupby("contributor", sort=True).agg(
        n_gold=("correct", "size"), n_correct=("correct", "sum"), **{column: (column, "mean")}
    )
    table = table.reset_index()
    table["n_correct"] = table["n_correct"].astype(np.int64)
    table["accuracy"] = table["n_correct"] / table["n_gold"]
    table["ci_low"], table["ci_high"] = _wilson(
        table["n_correct"].to_numpy(), table["n_gold"].to_numpy(), confidence
    )
    table = table[[*GOLD_COLUMNS, column]]
    low, high = _wilson(np.array([k]), np.array([n]), confidence)
    means = {name: float(np.mean(values)) if n else None for name, values in extra.items()}
    return GoldAccuracy(
        kind=kind, n_gold=n, n_correct=k, accuracy=k / n if n else None,
        ci_low=float(low[0]) if n else None, ci_high=float(high[0]) if n else None,
        reason=None if n else f"no {kind} on a gold item yet", contributors=table,
        confidence=confidence, **means,
    )  # fmt: skip


def rating_gold_accuracy(
    frame: pd.DataFrame, *, column: str = "score", confidence: float = 0.95
) -> GoldAccuracy:
    """How often ratings of gold items fall in the item's accepted range.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`crowdtune.records.ratings_frame` with two more columns, ``gold_low`` and
        ``gold_high``: the accepted range ``[gold_low, gold_high]`` of the rated item (equal for
        a single gold score), both NaN where the item has no gold. ``contributor`` and
        ``column`` are read too.
    column : str, default "score"
        The score column.
    confidence : float, default 0.95
        Coverage of the Wilson intervals.

    Returns
    -------
    GoldAccuracy
        ``kind="rating"``; a rating is correct when ``gold_low <= score <= gold_high``;
        ``mean_miss`` is the mean distance of the score from the range (0 inside it).

    Raises
    ------
    ValueError
        A missing column, or a row with only one bound or ``gold_low > gold_high``.
    """
    require_columns(frame, ["contributor", column, "gold_low", "gold_high"], "ratings frame")
    low = pd.to_numeric(frame["gold_low"], errors="coerce").to_numpy(dtype=float)
    high = pd.to_numeric(frame["gold_high"], errors="coerce").to_numpy(dtype=float)
    half = np.isnan(low) != np.isnan(high)
    if half.any():
        raise ValueError(
            f"ratings frame: row {int(np.flatnonzero(half)[0])} has one gold bound; give both "
            "gold_low and gold_high (equal for a single score), or neither"
        )
    gold = ~np.isnan(low)
    if (low[gold] > high[gold]).any():
        row = int(np.flatnonzero(gold)[np.flatnonzero(low[gold] > high[gold])[0]])
        raise ValueError(
            f"ratings frame: row {row} has gold_low {low[row]:g} > gold_high {high[row]:g}"
        )
    scores = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    gold &= ~np.isnan(scores)
    score, low, high = scores[gold], low[gold], high[gold]
    miss = np.maximum(low - score, 0) + np.maximum(score - high, 0)
    return _gold("rating", frame["contributor"][gold], miss == 0, {"mean_miss": miss}, confidence)


def revision_gold_accuracy(frame: pd.DataFrame, *, confidence: float = 0.95) -> GoldAccuracy:
    """How often revisions of items with a reference moved the answer towards it.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`crowdtune.records.revisions_frame`: ``original``, ``revised``, ``reference``
        (a known good revision; NaN/None or empty where the item has none) and ``contributor``
        are read.
    confidence : float, default 0.95
        Coverage of the Wilson intervals.

    Returns
    -------
    GoldAccuracy
        ``kind="revision"``. With ``d(x)`` the word edit distance of ``x`` to the reference
        (:func:`word_distance`), a revision is correct when ``d(revised) < d(original)``, or
        when the original already was the reference (``d(original) = 0``) and the revision
        kept it. ``mean_similarity`` is the mean of ``1 - normalised d(revised)``, and
        ``mean_similarity_original`` the same of the originals (the level to beat).
    """
    require_columns(frame, ["original", "revised", "reference", "contributor"], "revisions frame")
    reference = frame["reference"]
    gold = (reference.notna() & (reference.astype(str).str.strip() != "")).to_numpy()
    rows = frame[gold]
    before = [
        word_distance(a, r)
        for a, r in zip(rows["original"].astype(str), rows["reference"].astype(str), strict=True)
    ]
    after = [
        word_distance(a, r)
        for a, r in zip(rows["revised"].astype(str), rows["reference"].astype(str), strict=True)
    ]
    d0, d1 = np.array([d for d, _ in before]), np.array([d for d, _ in after])
    correct = (d1 < d0) | ((d0 == 0) & (d1 == 0))
    similarity = 1 - np.array([r for _, r in after], dtype=float)
    original = 1 - np.array([r for _, r in before], dtype=float)
    return _gold("revision", rows["contributor"], correct,
                 {"mean_similarity": similarity, "mean_similarity_original": original},
                 confidence)  # fmt: skip
