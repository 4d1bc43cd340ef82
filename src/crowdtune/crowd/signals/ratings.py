"""Krippendorff's alpha of ratings, for a project and for each rater against the others.

See :func:`rating_agreement`. The point estimates come from :func:`krippendorff.alpha`; the
bootstrap resamples from :func:`alpha_replicates`, which computes all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd

from crowdtune.crowd.signals.revisions import require_columns
from crowdtune.preference.agreement import Coefficient, _percentile_interval
from crowdtune.tables import json_records, jsonable

__all__ = ["LEVELS", "RATER_COLUMNS", "RatingAgreement", "alpha_replicates", "rating_agreement"]

#: Levels of measurement :func:`rating_agreement` reports, in order.
LEVELS = ("interval", "ordinal")
#: Columns of :attr:`RatingAgreement.raters`, in order.
RATER_COLUMNS = (
    "contributor", "n_items", "alpha_interval", "interval_ci_low", "interval_ci_high",
    "alpha_ordinal", "ordinal_ci_low", "ordinal_ci_high", "reason",
)  # fmt: skip
#: Largest block of bootstrap work, in (items × resamples) cells, so memory stays bounded.
_BLOCK = 2**22

Level = Literal["interval", "ordinal"]


def alpha_replicates(
    counts: np.ndarray, domain: np.ndarray, weights: np.ndarray, level: Level
) -> np.ndarray:
    """Krippendorff's alpha of each weighted resample of the units, all resamples at once.

    ``counts`` is ``(units, values)``: how many raters gave each value of ``domain`` (sorted
    ascending) to each unit; ``weights`` is ``(resamples, units)``: how often each unit is
    drawn. Alpha is ``1 - (n - 1) Σ_u w_u D_u / Σ_ck n_c n_k δ²_ck``, with
    ``D_u = Σ_{i≠j} δ²(x_i, x_j) / (m_u - 1)`` the disagreement within unit ``u`` (``m_u``
    values) and ``n_c`` the pairable values of the resample. The interval metric is
    ``δ² = (c - k)²``; Krippendorff's ordinal metric ``(Σ_{g=c..k} n_g - (n_c + n_k) / 2)²`` is the
    interval metric on the mid-ranks ``cumsum(n)_v - n_v / 2`` of the resample.

    Written by hand because :func:`krippendorff.alpha` takes one matrix per call (0.3-1 ms each),
    so a thousand resamples for each rater would take seconds; it equals
    :func:`krippendorff.alpha` of the resampled matrix (tested). NaN where a resample has no
    variation.
    """
    counts = np.asarray(counts, dtype=float)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    domain = np.asarray(domain, dtype=float)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m, weights = counts[pairable], m[pairable], weights[:, pairable]
    out = np.empty(len(weights))
    step = max(1, _BLOCK // max(len(counts), 1))
    for start in range(0, len(weights), step):
        w = weights[start : start + step]
        n_v = w @ counts  # (resamples, values)
        n = n_v.sum(axis=1)
        if level == "interval":
            pos = np.broadcast_to(domain, n_v.shape)
        else:
            pos = np.cumsum(n_v, axis=1) - n_v / 2
        s1, s2 = counts @ pos.T, counts @ (pos**2).T  # (units, resamples)
        # Σ_{i≠j} (x_i - x_j)² = 2 (m Σx² - (Σx)²) within a unit, and likewise over all values.
        within = 2 * (m[:, None] * s2 - s1**2) / (m[:, None] - 1)
        observed = np.einsum("bu,ub->b", w, within)
        expected = 2 * (n * (n_v * pos**2).sum(axis=1) - (n_v * pos).sum(axis=1) ** 2)
        varied = expected > 1e-12 * np.maximum(n, 1) ** 2 * max(float(np.ptp(pos)), 1.0) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + step] = np.where(varied, 1 - (n - 1) * observed / expected, np.nan)
    return out


def _value_counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (units, values), domain)`` of a ``(units, raters)`` matrix with NaN gaps."""
    domain = np.unique(matrix[~np.isnan(matrix)])
    return (matrix[:, :, None] == domain[None, None, :]).sum(axis=1), domain


def _alpha(
    counts: np.ndarray,
    domain: np.ndarray,
    level: Level,
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Point estimate (:func:`krippendorff.alpha`) and percentile bootstrap interval over units."""
    estimate = krippendorff.alpha(
        value_counts=counts, value_domain=domain, level_of_measurement=level
    )
    if n_bootstrap <= 0:
        return float(estimate), float("nan"), float("nan")
    n = len(counts)
    replicates = np.empty(n_bootstrap)
    step = max(1, _BLOCK // n)  # resamples per block, so the weights stay bounded in memory
    for start in range(0, n_bootstrap, step):
        b = min(step, n_bootstrap - start)
        # How often each unit is drawn in each resample: a bincount of the draws (much faster
        # than rng.multinomial over many units).
        draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        replicates[start : start + b] = alpha_replicates(counts, domain, weights, level)
    return (float(estimate), *_percentile_interval(replicates, confidence))


@dataclass(frozen=True)
class RatingAgreement:
    """Agreement among the raters of a ratings frame (see :func:`rating_agreement`).

    Parameters
    ----------
    interval, ordinal : Coefficient or None
        Krippendorff's alpha at each level with its bootstrap interval
        (:class:`crowdtune.preference.agreement.Coefficient`; bounds NaN without resamples);
        ``None`` when undefined, and ``reason`` says why.
    reason : str or None
        Why there is no alpha (no ratings, no item with two raters, no variation), else ``None``.
    raters : pandas.DataFrame
        One row per contributor, columns :data:`RATER_COLUMNS`: ``n_items`` (their items that
        others rated too), each level's alpha against the others with its interval, and
        ``reason`` (why their alphas are missing, else ``None``); most shared items first.
    n_items, n_raters, n_ratings : int
        Items rated by at least two contributors, the contributors and ratings on them.
    column : str
        The column that was read (``score`` or an ``aspect_<name>``).
    """

    interval: Coefficient | None
    ordinal: Coefficient | None
    reason: str | None
    raters: pd.DataFrame
    n_items: int
    n_raters: int
    n_ratings: int
    column: str = "score"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary; the raters table as a list of rows."""
        alphas = {
            f"krippendorff_alpha_{level}": None if c is None else c.to_dict()
            for level, c in (("interval", self.interval), ("ordinal", self.ordinal))
        }
        return jsonable({
            "column": self.column,
            "n_items": self.n_items,
            "n_raters": self.n_raters,
            "n_ratings": self.n_ratings,
            **alphas,
            "reason": self.reason,
            "raters": json_records(self.raters),
        })  # fmt: skip


def _rating_matrix(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``(item, occurrence) × contributor`` table of scores (NaN where not rated)."""
    require_columns(frame, ["prompt", "response", "contributor", column], "ratings frame")
    if frame["contributor"].isna().any():
        row = int(np.flatnonzero(frame["contributor"].isna().to_numpy())[0])
        raise ValueError(f"ratings frame: row {row} has no contributor; agreement needs one")
    scores = pd.to_numeric(frame[column], errors="coerce")
    bad = (frame[column].notna() & scores.isna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = frame[column].iloc[row]
        raise ValueError(f"ratings frame: row {row} has {column}={value!r}, not a number")
    votes = pd.DataFrame({
        "item": frame.groupby(["prompt", "response"], sort=False).ngroup().to_numpy(),
        "contributor": frame["contributor"].astype(str).to_numpy(),
        "score": scores.to_numpy(dtype=float),
    }).dropna(subset=["score"])  # fmt: skip
    # A contributor's k-th rating of identical content joins the others' k-th ratings as one
    # item, as in crowdtune.preference.agreement (two items may carry the same text).
    votes["occurrence"] = votes.groupby(["item", "contributor"]).cumcount()
    return votes.pivot(index=["item", "occurrence"], columns="contributor", values="score")


def _rater_row(
    name: str,
    own: np.ndarray,
    others: np.ndarray,
    min_items: int,
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[Any, ...]:
    """One row of :data:`RATER_COLUMNS`: the rater against the consensus of the others."""
    shared = ~np.isnan(own) & (~np.isnan(others)).any(axis=1)
    n = int(shared.sum())
    missing = (np.nan,) * 6
    if n == 0:
        return (name, n, *missing, "rated no item another contributor rated")
    if n < min_items:
        return (name, n, *missing, f"shares {n} item(s) with others; {min_items} needed")
    values: list[float] = []
    why = None
    for level, consensus in (("interval", np.nanmean), ("ordinal", np.nanmedian)):
        pair = np.column_stack([own[shared], consensus(others[shared], axis=1)])
        counts, domain = _value_counts(pair)
        if len(domain) < 2:
            values += missing[:3]
            why = f"they and the others give {domain[0]:g} on all {n} shared item(s)"
            continue
        values += _alpha(counts, domain, level, n_bootstrap, confidence, rng)  # type: ignore[arg-type]
    return (name, n, *values, why)


def rating_agreement(
    frame: pd.DataFrame,
    *,
    column: str = "score",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    min_items: int = 2,
) -> RatingAgreement:
    """Krippendorff's alpha of a ratings frame, for the project and for each rater.

    The reliability data are the raters × items matrix of ``column`` (NaN where a contributor
    did not rate an item); items rated by one contributor only carry no pairable values and are
    left out. Alpha is computed at the interval level (differences of scores count by their
    size) and at the ordinal level (only the order of the scores counts), with percentile
    bootstrap intervals over items (whole items resampled with replacement).

    **Each rater against the others.** For contributor *r*, take the items *r* rated that at
    least one other contributor rated too, and form the two-row matrix [*r*'s score; the
    consensus of the others], the consensus being the others' mean at the interval level and
    their median at the ordinal level; the rater's alpha is Krippendorff's alpha of that matrix
    (interval resp. ordinal), with a bootstrap interval over those items. It is 1 when *r*
    always gives the consensus, near 0 when *r*'s scores are unrelated to it (random scores),
    negative when systematically opposed. A consensus of several raters varies less than one
    rater, so compare raters within a project rather than with the project's alpha.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`crowdtune.records.ratings_frame`: ``prompt``, ``response``, ``contributor`` and
        ``column`` are read. Rows whose ``column`` is NaN (an aspect a rating lacks) are skipped.
    column : str, default "score"
        The score column (or an ``aspect_<name>`` column).
    n_bootstrap : int, default 1000
        Resamples of the items for every interval (0 for none: the bounds are NaN).
    confidence : float, default 0.95
        Coverage of every interval.
    seed : int, optional
        Seed of the resampling.
    min_items : int, default 2
        Fewest shared items for a rater to get an alpha.

    Returns
    -------
    RatingAgreement
        Alphas, or ``None`` with a ``reason`` where undefined.

    Raises
    ------
    ValueError
        A missing column, a rating without contributor, a score that is not a number, or
        ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    full = _rating_matrix(frame, column)
    table = full[full.notna().sum(axis=1) >= 2]
    matrix = table.to_numpy(dtype=float)  # (items, raters); every rater, NaN where not rated
    rated = ~np.isnan(matrix)
    n_items, n_raters, n_ratings = len(matrix), int(rated.any(axis=0).sum()), int(rated.sum())
    rng = np.random.default_rng(seed)
    interval = ordinal = None
    reason: str | None = None
    if frame.empty:
        reason = "no ratings yet"
    elif not n_items:
        reason = "no item has ratings from two different contributors yet"
    else:
        counts, domain = _value_counts(matrix)
        if len(domain) < 2:
            reason = (
                f"every rating on the {n_items} shared item(s) is {domain[0]:g}: "
                "alpha is undefined without variation"
            )
        else:
            interval, ordinal = (
                Coefficient(
                    f"krippendorff_alpha_{level}",
                    *_alpha(counts, domain, level, n_bootstrap, confidence, rng),  # type: ignore[arg-type]
                    n_items=n_items,
                    n_raters=None,
                    confidence=confidence,
                )
                for level in LEVELS
            )
    rows = [
        _rater_row(str(name), matrix[:, j], np.delete(matrix, j, axis=1), min_items,
                   n_bootstrap, confidence, rng)
        for j, name in enumerate(table.columns)
    ]  # fmt: skip
    rows.sort(key=lambda row: (-row[1], row[0]))
    return RatingAgreement(
        interval,
        ordinal,
        reason,
        pd.DataFrame(rows, columns=list(RATER_COLUMNS)),
        n_items=n_items,
        n_raters=n_raters,
        n_ratings=n_ratings,
        column=column,
    )
