"""Predictors by name (the ``--model`` names of the command line), and saving a fitted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib

from crowdtune import __version__
from crowdtune.preference.base import seeded
from crowdtune.preference.ensemble import EnsembleModel
from crowdtune.preference.models import CPU_PREDICTORS
from crowdtune.preference.priors import PriorAdapted
from crowdtune.preference.ties import TieAwareModel
from crowdtune.preference.transformer import TransformerPreferenceModel
from crowdtune.validation import check_choice

#: ``--model`` names and what they are; ``ensemble`` is the default, chosen by leave-one-dataset-out
#: log loss on PandaLM, LLMEval² and MT-Bench (benchmarks/RESULTS.md, issue #21).
MODELS = {
    "length": "logistic regression on the two responses' lengths (baseline)",
    "difference-bucket": "outcome rates in 250 quantile buckets of the length difference",
    "features-gbdt": "LightGBM on cheap text features (lengths, markup, overlap, refusals)",
    "embedding-gbdt": "LightGBM on MiniLM embeddings of prompt and responses + cheap features",
    "tie-aware": "P(tie) from how alike the answers are, times a symmetric A-vs-B split",
    "transformer": "3-label head on a causal LM with a LoRA adapter (GPU for real models)",
    "ensemble": "length, tie-aware and features-gbdt averaged, equal weights (default)",
}

#: The default ``--model`` (of ``crowdtune preference fit`` and the Python API's users).
DEFAULT_MODEL = "ensemble"

#: Models cheap enough to run on CPU in cross-validation: every name but the transformer.
CPU_MODELS = tuple(name for name in MODELS if name != "transformer")

#: The class behind each name of :data:`MODELS`.
PREDICTORS: dict[str, type[Any]] = {
    **CPU_PREDICTORS,
    "tie-aware": TieAwareModel,
    "transformer": TransformerPreferenceModel,
    "ensemble": EnsembleModel,
}


def make_model(name: str, seed: int = 0, **params: Any) -> Any:
    """A fresh, unfitted predictor called ``name`` (see :data:`MODELS`) with parameters
    ``params``, seeded with ``seed`` unless it is deterministic or ``params`` seed it."""
    check_choice(name, MODELS, "preference model")
    return seeded(PREDICTORS[name], seed, **params)


#: Files of a model directory.
MODEL_FILE, META_FILE = "model.joblib", "meta.json"


def save_model(model: Any, name: str, directory: Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a fitted predictor and ``meta.json`` (name, version, ``meta``) to ``directory``.

    Models with their own ``save(directory)`` (the transformer: adapter weights and tokenizer)
    use it; the rest are pickled with joblib.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save"):
        model.save(directory)
    else:
        joblib.dump(model, directory / MODEL_FILE)
    info = {"model": name, "crowdtune_version": __version__, **(meta or {})}
    (directory / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return directory


def load_model(
    directory: Path, adapt_priors: bool = False, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Read a model directory written by :func:`save_model`: ``(model, meta)``.

    ``adapt_priors`` wraps the model in :class:`~crowdtune.preference.priors.PriorAdapted`
    (seeded with ``seed``), under the training class shares that ``meta.json`` records as
    ``train_priors``.
    """
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: {directory} is not a model directory written by "
            "`crowdtune preference fit`"
        )
    meta = json.loads(meta_path.read_text())
    if adapt_priors and "train_priors" not in meta:
        raise ValueError(
            f"{meta_path} does not record the training class shares (train_priors) that prior "
            "adaptation needs; refit the model with this version of `crowdtune preference fit`"
        )
    if meta.get("model") == "transformer":
        model = TransformerPreferenceModel.load(directory)
    else:
        model = joblib.load(directory / MODEL_FILE)
    if adapt_priors:
        model = PriorAdapted.from_fitted(model, meta["train_priors"], random_state=seed)
    return model, meta
