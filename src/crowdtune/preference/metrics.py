"""Scores of A/B/tie probabilities: log loss with a bootstrap interval, accuracy, calibration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crowdtune.preference.base import check_labels
from crowdtune.stats import bootstrap_mean_ci

#: Probabilities are clipped to [EPS, 1] before the log, as scikit-learn's ``log_loss`` does.
EPS = float(np.finfo(np.float64).eps)

#: The log loss of predicting 1/3 for every class.
UNIFORM_LOG_LOSS = float(np.log(3.0))


def check_proba(proba: Any, n: int) -> np.ndarray:
    """``proba`` as a float[n, 3] array whose rows are distributions, or a ``ValueError``."""
    p = np.asarray(proba, dtype=float)
    if p.shape != (n, 3):
        raise ValueError(f"expected probabilities of shape ({n}, 3), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1, atol=1e-6):
        raise ValueError("every row of probabilities must be finite, non-negative and sum to 1")
    return p


def row_log_loss(y: Any, proba: Any) -> np.ndarray:
    """``-log p[true class]`` per row (probabilities clipped at :data:`EPS`)."""
    labels = np.asarray(y)
    p = np.asarray(proba, dtype=float)
    return -np.log(np.clip(p[np.arange(len(labels)), labels], EPS, 1.0))


def evaluate_proba(y: Any, proba: Any, n_bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Log loss (with a 95% bootstrap CI over rows), accuracy and n.

    Returns
    -------
    dict
        ``{"log_loss", "log_loss_ci": [lo, hi], "accuracy", "n"}``.
    """
    labels = check_labels(y, len(np.asarray(y)))
    p = check_proba(proba, len(labels))
    losses = row_log_loss(labels, p)
    return {
        "log_loss": float(losses.mean()) if losses.size else float("nan"),
        "log_loss_ci": list(bootstrap_mean_ci(losses, n_bootstrap, seed)),
        "accuracy": float((p.argmax(axis=1) == labels).mean()) if labels.size else float("nan"),
        "n": int(labels.size),
    }


def tie_scores(y: Any, proba: Any, n_bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How well P(tie) alone predicts ties: binary log loss and Brier score of tie vs not, each
    with a 95% bootstrap CI over rows, and the observed and mean predicted tie shares.

    The three-class log loss mixes ties with the A-vs-B split, where length dominates; these two
    scores look at the tie probability only.

    Returns
    -------
    dict
        ``{"tie_log_loss", "tie_log_loss_ci", "tie_brier", "tie_brier_ci", "tie_share",
        "mean_p_tie", "n"}``.
    """
    labels = check_labels(y, len(np.asarray(y)))
    p_tie = np.clip(check_proba(proba, len(labels))[:, 2], EPS, 1 - EPS)
    tie = (labels == 2).astype(float)
    losses = -(tie * np.log(p_tie) + (1 - tie) * np.log1p(-p_tie))
    squared = (p_tie - tie) ** 2
    return {
        "tie_log_loss": float(losses.mean()) if losses.size else float("nan"),
        "tie_log_loss_ci": list(bootstrap_mean_ci(losses, n_bootstrap, seed)),
        "tie_brier": float(squared.mean()) if squared.size else float("nan"),
        "tie_brier_ci": list(bootstrap_mean_ci(squared, n_bootstrap, seed)),
        "tie_share": float(tie.mean()) if tie.size else float("nan"),
        "mean_p_tie": float(p_tie.mean()) if p_tie.size else float("nan"),
        "n": int(labels.size),
    }


def reliability_table(
    y: Any, proba: Any, n_bins: int = 10, label: int | None = None
) -> pd.DataFrame:
    """Reliability diagram data: one class's probabilities, or all three pooled (one-vs-rest).

    Each (row, class) probability falls into one of ``n_bins`` equal-width bins; per bin: the mean
    predicted probability, the observed frequency of that class, and the count. Also the expected
    calibration error as the column ``ece`` (the same value on every row).
    """
    labels = np.asarray(y)
    p = np.asarray(proba, dtype=float)
    hits = labels[:, None] == np.arange(3)[None, :]
    if label is not None:
        p, hits = p[:, [label]], hits[:, [label]]
    predicted = p.ravel()
    observed = hits.ravel().astype(float)
    bins = np.minimum((predicted * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(bins, predicted, n_bins) / count
        freq = np.bincount(bins, observed, n_bins) / count
    ece = float(np.nansum(count * np.abs(mean_p - freq)) / max(count.sum(), 1))
    edges = np.linspace(0, 1, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "mean_predicted": mean_p,
            "observed": freq,
            "count": count,
            "ece": ece,
        }
    )
