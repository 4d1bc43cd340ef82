"""The CPU predictors and the default ensemble, compared by cross-validation.

:func:`cpu_predictors` builds the predictors of
:data:`~crowdtune.preference.models.CPU_PREDICTORS` (the length rule, difference buckets, LightGBM
on text features and, with ``embeddings``, on MiniLM embeddings), the tie-aware model and the
default ensemble (:func:`~crowdtune.preference.ensemble.default_members` averaged);
:func:`compare_cpu_predictors` cross-validates them under both schemes of
:mod:`crowdtune.preference.cv`. ``crowdtune demo`` runs it on PandaLM, LLMEval² and MT-Bench.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.preference.base import seeded
from crowdtune.preference.cv import SCHEMES, compare_models, n_folds
from crowdtune.preference.ensemble import EnsembleModel
from crowdtune.preference.models import CPU_PREDICTORS
from crowdtune.preference.ties import TieAwareModel

#: The CPU predictors that read MiniLM embeddings: every text is embedded once, minutes on 2
#: cores before its vectors are cached.
NEEDS_EMBEDDINGS = ("embedding-gbdt",)


def cpu_predictors(*, embeddings: bool = False, seed: int = 0) -> dict[str, Any]:
    """Fresh, unfitted CPU predictors by name: :data:`CPU_PREDICTORS` (``embedding-gbdt`` only
    with ``embeddings``), ``"tie-aware"``, and the default ``"ensemble"`` last."""
    models = {
        name: seeded(cls, seed)
        for name, cls in CPU_PREDICTORS.items()
        if embeddings or name not in NEEDS_EMBEDDINGS
    }
    return {**models, "tie-aware": TieAwareModel(), "ensemble": EnsembleModel(random_state=seed)}


def cpu_comparison_fits(frame: pd.DataFrame, *, embeddings: bool = False) -> int:
    """How many fits :func:`compare_cpu_predictors` runs on ``frame`` (for progress bars)."""
    n_models = len(cpu_predictors(embeddings=embeddings))
    return n_models * sum(n_folds(frame, scheme) for scheme in SCHEMES)


def compare_cpu_predictors(
    frame: pd.DataFrame,
    *,
    embeddings: bool = False,
    seed: int = 0,
    on_fold: Callable[[], None] = lambda: None,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Cross-validate :func:`cpu_predictors` on a comparisons frame, grouped (5 folds by prompt)
    and leaving one dataset out.

    Returns :func:`~crowdtune.preference.cv.compare_models`' table (one row per model, scheme
    and held-out dataset, ``"all"`` for the pooled rows) and the out-of-fold probabilities by
    ``(scheme, model)``.
    """
    models = cpu_predictors(embeddings=embeddings, seed=seed)
    return compare_models(models, frame, seed=seed, on_fold=on_fold)
