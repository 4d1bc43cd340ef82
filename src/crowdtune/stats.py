"""Statistics shared by every stage: intervals of a mean and correlations with intervals.

Intervals of a mean
    :func:`mean_ci` gives a Student-t interval, ``mean ± t · sd / sqrt(n)``, whose half-width
    :func:`t_half_width` also computes elementwise (one interval per group of a table);
    :func:`bootstrap_mean_ci` gives a percentile bootstrap interval.
Correlations
    :func:`correlation` gives a point estimate (from :mod:`scipy.stats`) with a percentile
    bootstrap interval over paired resamples; :func:`fisher_z_mean` pools the correlations of
    independent runs through Fisher's z. Both return a :class:`Correlation`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=200)
>>> result = correlation(x, x + rng.normal(size=200), "spearman", rng=1)
>>> round(result.estimate, 2), result.low < result.estimate < result.high
(0.67, True)
>>> round(fisher_z_mean([0.5, 0.5, 0.5], [50, 60, 70]).estimate, 12)
0.5
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from crowdtune.validation import check_choice

#: The correlation coefficients :func:`correlation` knows.
METHODS = ("pearson", "spearman", "kendall")
#: Largest bootstrap block, in resampled values (rows × n), so memory stays bounded for large n.
BOOT_BLOCK = 2**22
#: Up to this many points, Kendall's tau of every resample is computed pairwise in numpy.
PAIRWISE_KENDALL_MAX_N = 300
#: Largest block of pairwise Kendall signs, in pairs (rows × n (n - 1) / 2).
PAIR_BLOCK = 2**21


def t_half_width(sd: Any, n: Any, level: float = 0.95) -> Any:
    """Half-width of the Student-t interval of a mean: ``t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    Elementwise over arrays or Series of standard deviations (``ddof=1``) and counts; NaN where
    ``n < 2`` (no degrees of freedom).
    """
    return scipy.stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)


def mean_ci(
    values: Sequence[float] | np.ndarray | pd.Series, level: float = 0.95
) -> dict[str, float | None]:
    """Mean with a Student-t confidence interval: ``mean ± t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    NaNs are ignored. Bounds are ``None`` with fewer than two values; everything is ``None`` with
    none.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None}
    half = float(t_half_width(x.std(ddof=1), x.size, level))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def bootstrap_mean_ci(
    values: np.ndarray, n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (rows resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # Resampling counts per row (one multinomial per draw) equals resampling rows: O(draws * n).
    counts = rng.multinomial(v.size, np.full(v.size, 1.0 / v.size), size=n_bootstrap)
    means = counts @ v / v.size
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_count_blocks(
    n: int, n_bootstrap: int, seed: int | np.random.Generator = 0
) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` rows as count matrices, in blocks of at most
    :data:`BOOT_BLOCK` values: each block is int[draws, n], row ``b`` counting how often each row
    is drawn in resample ``b``. For statistics that take row weights (a weighted mean, an EM
    fitted with weights), counts replace materialising the resampled rows."""
    rng = np.random.default_rng(seed)
    rows = max(1, BOOT_BLOCK // max(n, 1))
    for first in range(0, n_bootstrap, rows):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(rows, n_bootstrap - first))


@dataclass(frozen=True)
class Correlation:
    """A correlation estimate with its confidence interval.

    Parameters
    ----------
    method : str
        What was computed, e.g. ``"spearman"`` or ``"fisher-z(spearman)"``.
    estimate : float
        The point estimate.
    low, high : float
        The confidence interval's bounds.
    n : int
        The number of paired points (summed over runs for a pooled estimate).
    confidence : float
        The interval's nominal coverage, e.g. 0.95.
    """

    method: str
    estimate: float
    low: float
    high: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, str | float | int]:
        """The fields as a flat dict, ready for JSON or a DataFrame row."""
        return asdict(self)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")


def _check_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-d; got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    if len(x) < 3:
        raise ValueError(f"a correlation needs at least 3 paired points; got {len(x)}")
    for name, values in (("x", x), ("y", y)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{name} has {int(bad.sum())} non-finite values (first at index "
                f"{int(np.flatnonzero(bad)[0])}: {values[bad][0]})"
            )
        if np.all(values == values[0]):
            raise ValueError(
                f"{name} is constant ({values[0]!r} everywhere): its correlation is undefined"
            )
    return x, y


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair of ``(b, n)`` arrays; NaN for a constant row."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(x * y, axis=1) / np.sqrt(np.sum(x * x, axis=1) * np.sum(y * y, axis=1))
    return np.clip(r, -1.0, 1.0)


def _rowwise_kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b (scipy's default) of each row pair of ``(b, n)`` arrays; NaN if constant."""
    if x.shape[1] > PAIRWISE_KENDALL_MAX_N:  # O(n log n) each in scipy beats O(n^2) pairs here
        return np.array([scipy.stats.kendalltau(a, b).statistic for a, b in zip(x, y, strict=True)])
    first, second = np.triu_indices(x.shape[1], k=1)
    pairs = len(first)
    rows = max(1, PAIR_BLOCK // pairs)
    tau = np.empty(len(x))
    for start in range(0, len(x), rows):
        block = slice(start, start + rows)
        dx = np.sign(x[block, first] - x[block, second])
        dy = np.sign(y[block, first] - y[block, second])
        untied_x = pairs - np.sum(dx == 0, axis=1)
        untied_y = pairs - np.sum(dy == 0, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau[block] = np.sum(dx * dy, axis=1) / np.sqrt(untied_x * untied_y)
    return tau


def _statistic(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """The correlation of each row pair of ``(b, n)`` arrays."""
    if method == "pearson":
        return _rowwise_pearson(x, y)
    if method == "spearman":
        return _rowwise_pearson(scipy.stats.rankdata(x, axis=1), scipy.stats.rankdata(y, axis=1))
    return _rowwise_kendall(x, y)


def correlation(
    x: np.ndarray,
    y: np.ndarray,
    method: str = "pearson",
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
) -> Correlation:
    """Correlation of paired samples with a percentile bootstrap confidence interval.

    The estimate is scipy's (``pearsonr``, ``spearmanr`` or ``kendalltau``, i.e. tau-b). The
    interval takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    statistic over ``n_boot`` resamples of the pairs with replacement. Resamples are computed in
    blocks of whole rows: Pearson and Spearman (ranks by ``rankdata(axis=1)``) fully vectorised,
    Kendall pairwise in numpy up to :data:`PAIRWISE_KENDALL_MAX_N` points and by one scipy call
    per resample above. A resample that happens to be constant has no correlation and is left
    out of the quantiles.

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Paired values, finite, at least 3 pairs, neither constant.
    method : {"pearson", "spearman", "kendall"}, default "pearson"
        The coefficient.
    n_boot : int, default 1000
        Bootstrap resamples.
    confidence : float, default 0.95
        Nominal coverage of the interval.
    rng : numpy.random.Generator or int, optional
        Source of the resamples; the same seed gives the same interval.

    Returns
    -------
    Correlation
        ``n`` is the number of pairs.

    Raises
    ------
    ValueError
        For unequal lengths, fewer than 3 pairs, non-finite values, a constant input, an unknown
        method, ``n_boot < 1`` or ``confidence`` outside (0, 1), each named.
    """
    check_choice(method, METHODS, "correlation method")
    x, y = _check_pairs(x, y)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}")
    _check_confidence(confidence)
    if method == "pearson":
        estimate = scipy.stats.pearsonr(x, y).statistic
    elif method == "spearman":
        estimate = scipy.stats.spearmanr(x, y).statistic
    else:
        estimate = scipy.stats.kendalltau(x, y).statistic

    generator = np.random.default_rng(rng)
    n = len(x)
    rows = max(1, BOOT_BLOCK // n)
    boot = np.empty(n_boot)
    for first in range(0, n_boot, rows):
        index = generator.integers(0, n, size=(min(rows, n_boot - first), n))
        boot[first : first + len(index)] = _statistic(x[index], y[index], method)
    alpha = 1.0 - confidence
    low, high = (
        np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
        if np.isfinite(boot).any()
        else (np.nan, np.nan)
    )
    return Correlation(
        method=method,
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        n=n,
        confidence=confidence,
    )


def fisher_z_mean(
    estimates: np.ndarray,
    sizes: np.ndarray,
    *,
    confidence: float = 0.95,
    method: str = "pearson",
) -> Correlation:
    """Pool correlations of independent runs through Fisher's z, with a normal interval.

    Each ``r_i`` (clipped to ``±(1 - 1e-12)``) becomes ``z_i = atanh(r_i)``; the pooled
    ``z = Σ (n_i - 3) z_i / Σ (n_i - 3)`` has standard error ``1 / sqrt(Σ (n_i - 3))``, and the
    estimate and interval are ``tanh`` of ``z`` and of ``z ± q se`` with ``q`` the normal quantile.

    The standard error assumes the runs are independent and uses Pearson's large-sample variance
    ``1 / (n - 3)``. For other coefficients it is an approximation: the variance of ``atanh`` is
    about ``1.06 / (n - 3)`` for Spearman's rho (slightly understated here) and ``0.437 / (n - 4)``
    for Kendall's tau (overstated here), after Fieller, Hartley and Pearson (1957).

    Parameters
    ----------
    estimates : array-like of shape (k,)
        One correlation per run, in [-1, 1].
    sizes : array-like of shape (k,)
        The number of pairs behind each, each at least 4.
    confidence : float, default 0.95
        Nominal coverage of the interval.
    method : str, default "pearson"
        Label of the pooled coefficient; the result's method is ``"fisher-z(<method>)"``.

    Returns
    -------
    Correlation
        ``n`` is the total number of pairs over the runs.
    """
    _check_confidence(confidence)
    r = np.asarray(estimates, dtype=float)
    n = np.asarray(sizes)
    if r.ndim != 1 or n.ndim != 1 or len(r) != len(n):
        raise ValueError(
            f"estimates and sizes must be 1-d of the same length; got shapes {r.shape} and "
            f"{n.shape}"
        )
    if len(r) == 0:
        raise ValueError("fisher_z_mean needs at least one estimate; got none")
    if not np.all(np.isfinite(r)) or np.any(np.abs(r) > 1):
        bad = int(np.flatnonzero(~(np.abs(r) <= 1))[0])
        raise ValueError(f"estimates must be finite and in [-1, 1]; got {r[bad]} at index {bad}")
    if not np.issubdtype(n.dtype, np.integer) or np.any(n < 4):
        raise ValueError(
            f"sizes must be integers of at least 4 (the weight is n - 3); got {n.tolist()}"
        )
    weights = (n - 3).astype(float)
    z = np.arctanh(np.clip(r, -(1 - 1e-12), 1 - 1e-12))
    pooled = float(np.sum(weights * z) / np.sum(weights))
    margin = scipy.stats.norm.ppf((1 + confidence) / 2) / np.sqrt(np.sum(weights))
    return Correlation(
        method=f"fisher-z({method})",
        estimate=float(np.tanh(pooled)),
        low=float(np.tanh(pooled - margin)),
        high=float(np.tanh(pooled + margin)),
        n=int(np.sum(n)),
        confidence=confidence,
    )
