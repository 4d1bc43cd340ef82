"""Pairwise preference models: A/B/tie predictors, calibration, leaderboards, annotator agreement.

Predictors are scikit-learn estimators over a comparisons frame
(:func:`crowdtune.records.comparisons_frame`) with ``predict_proba`` in class order ``[A, B, TIE]``,
symmetric under swapping A and B. :data:`MODELS` names them as the command line does.
"""

from crowdtune.preference.base import PairFeatureModel, swap_frame, swap_labels, symmetrize
from crowdtune.preference.calibration import (
    CALIBRATIONS,
    CalibratedPreferenceModel,
    out_of_fold_proba,
    prompt_groups,
)
from crowdtune.preference.cv import cross_validate, dataset_of
from crowdtune.preference.ensemble import EnsembleModel, fit_pool_weights
from crowdtune.preference.metrics import (
    UNIFORM_LOG_LOSS,
    evaluate_proba,
    reliability_table,
    tie_scores,
)
from crowdtune.preference.models import (
    DifferenceBucketModel,
    EmbeddingGBDT,
    FeaturesGBDT,
    LengthModel,
)
from crowdtune.preference.priors import (
    PriorAdapted,
    adjust_priors,
    bootstrap_priors,
    estimate_priors,
)
from crowdtune.preference.registry import (
    CPU_MODELS,
    DEFAULT_MODEL,
    MODELS,
    load_model,
    make_model,
    save_model,
)
from crowdtune.preference.ties import TieAwareModel

__all__ = [
    "CALIBRATIONS",
    "CPU_MODELS",
    "DEFAULT_MODEL",
    "MODELS",
    "UNIFORM_LOG_LOSS",
    "CalibratedPreferenceModel",
    "DifferenceBucketModel",
    "EmbeddingGBDT",
    "EnsembleModel",
    "FeaturesGBDT",
    "LengthModel",
    "PairFeatureModel",
    "PriorAdapted",
    "TieAwareModel",
    "adjust_priors",
    "bootstrap_priors",
    "cross_validate",
    "dataset_of",
    "estimate_priors",
    "evaluate_proba",
    "fit_pool_weights",
    "load_model",
    "make_model",
    "out_of_fold_proba",
    "prompt_groups",
    "reliability_table",
    "save_model",
    "swap_frame",
    "swap_labels",
    "symmetrize",
    "tie_scores",
]
