"""Jensen–Shannon divergence of two pooled count distributions (POS tags, lemmas).

:func:`jensen_shannon` gives the divergence (base 2, in [0, 1]) of the pooled distributions of two
``(texts, categories)`` count matrices with a 95% basic bootstrap interval (texts resampled within
each set) and a permutation baseline (texts reassigned to the two sets at random): JSD of finite
samples is positive even for one distribution, so the baseline says what "no difference" looks
like at these sizes. :func:`top_lemmas` lists the categories that contribute most to it.
:func:`crowdtune.curation.distribution.compare_distributions` applies both to POS and lemma counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.spatial.distance import jensenshannon

__all__ = ["JSDResult", "jensen_shannon", "top_lemmas"]


@dataclass(frozen=True)
class JSDResult:
    """Jensen–Shannon divergence (base 2) of two pooled count distributions.

    ``jsd`` is the plug-in estimate, which finite samples bias upward (much so for sparse lemma
    counts); ``jsd_corrected`` = 2·jsd − the bootstrap mean, the bootstrap bias-corrected
    estimate, and ``low``/``high`` its 95% basic bootstrap interval (texts resampled within each
    set; both clipped at 0).
    ``null_mean``/``null_q95``: the divergence when texts are assigned to the sets at random
    (permutation baseline); ``p_value``: share of permutations at least as large as observed
    (with the +1 correction).
    """

    what: str
    jsd: float
    jsd_corrected: float
    low: float
    high: float
    null_mean: float
    null_q95: float
    p_value: float
    n_categories: int
    n_boot: int
    n_permutations: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _jsd_rows(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise JSD (base 2) of count matrices; NaN where a row has no counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = left / left.sum(axis=1, keepdims=True)
        q = right / right.sum(axis=1, keepdims=True)
        m = (p + q) / 2

        def kl(a: np.ndarray) -> np.ndarray:
            return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / np.where(m > 0, m, 1)), 0.0)

        return np.clip((kl(p).sum(axis=1) + kl(q).sum(axis=1)) / 2, 0.0, 1.0)


def jensen_shannon(
    train_counts: np.ndarray | scipy.sparse.spmatrix,
    test_counts: np.ndarray | scipy.sparse.spmatrix,
    *,
    what: str = "",
    n_boot: int = 200,
    n_permutations: int = 200,
    rng: np.random.Generator | int | None = 0,
) -> JSDResult:
    """JSD of the pooled distributions of two ``(texts, categories)`` count matrices.

    The point estimate is scipy's :func:`~scipy.spatial.distance.jensenshannon` squared (it
    returns the distance, the square root of the divergence), base 2. Columns must be aligned.
    Resamples are weighted sums of rows: one sparse product per block of resamples.
    """
    rng = np.random.default_rng(rng)
    a = scipy.sparse.csr_matrix(train_counts, dtype=float)
    b = scipy.sparse.csr_matrix(test_counts, dtype=float)
    pooled_a = np.asarray(a.sum(axis=0)).ravel()
    pooled_b = np.asarray(b.sum(axis=0)).ravel()
    nan = float("nan")
    if pooled_a.sum() == 0 or pooled_b.sum() == 0:
        return JSDResult(what, nan, nan, nan, nan, nan, nan, nan, a.shape[1], 0, 0)
    observed = float(jensenshannon(pooled_a, pooled_b, base=2) ** 2)
    n_a, n_b = a.shape[0], b.shape[0]
    boot_a = np.stack(
        [np.bincount(rng.integers(0, n_a, n_a), minlength=n_a) for _ in range(n_boot)]
    )
    boot_b = np.stack(
        [np.bincount(rng.integers(0, n_b, n_b), minlength=n_b) for _ in range(n_boot)]
    )
    boot = _jsd_rows(np.asarray((a.T @ boot_a.T).T), np.asarray((b.T @ boot_b.T).T))
    both = scipy.sparse.vstack([a, b]).tocsr()
    labels = np.zeros((n_permutations, n_a + n_b))
    for row in labels:
        row[rng.permutation(n_a + n_b)[:n_a]] = 1.0
    total = pooled_a + pooled_b
    left = np.asarray((both.T @ labels.T).T)
    null = _jsd_rows(left, total[None, :] - left)
    # The plug-in JSD is biased upward (more so for sparse lemma counts: resampled texts repeat
    # rare lemmas), so percentile intervals miss it; the basic bootstrap interval reflects the
    # resamples around the estimate and so corrects for that bias to first order.
    low, high = (
        (max(0.0, 2 * observed - q) for q in np.nanquantile(boot, [0.975, 0.025]))
        if n_boot
        else (nan, nan)
    )
    corrected = max(0.0, 2 * observed - float(np.nanmean(boot))) if n_boot else nan
    return JSDResult(
        what, observed, corrected, float(low), float(high),
        float(np.nanmean(null)) if n_permutations else nan,
        float(np.nanquantile(null, 0.95)) if n_permutations else nan,
        float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
        if n_permutations
        else nan,
        a.shape[1], n_boot, n_permutations,
    )  # fmt: skip


def top_lemmas(
    a: scipy.sparse.csr_matrix, b: scipy.sparse.csr_matrix, vocabulary: list[str], k: int = 20
) -> pd.DataFrame:
    """The k lemmas (columns of the aligned count matrices ``a`` and ``b``) with the largest
    terms in the sum of the JSD of their pooled distributions, with their shares in each set."""
    p = np.asarray(a.sum(axis=0)).ravel()
    q = np.asarray(b.sum(axis=0)).ravel()
    if p.sum() == 0 or q.sum() == 0:
        return pd.DataFrame(columns=["lemma", "train_share", "test_share", "jsd_term"])
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        term = 0.5 * (
            np.where(p > 0, p * np.log2(p / m), 0) + np.where(q > 0, q * np.log2(q / m), 0)
        )
    order = np.argsort(-term)[:k]
    return pd.DataFrame({"lemma": [vocabulary[i] for i in order], "train_share": p[order],
                         "test_share": q[order], "jsd_term": term[order]})  # fmt: skip
