"""Training stages with TRL: supervised fine-tuning, a reward model, DPO, and RL (GRPO).

One runner per method, one config for all: :class:`StageConfig` names the model, the data, the
output folder and the few settings people change; ``run_sft``, ``run_reward``, ``run_dpo`` and
``run_rl`` (or :func:`run_stage` with the stage's name) build the stage's dataset
(:mod:`crowdtune.training.data`), hold out ``eval_share`` of it, train with the TRL trainer of
that method, save the model (or, with ``lora=True``, the LoRA adapter) and the tokenizer to
``out``, and write ``out/metrics.json``: the loss by step (from the trainer's log history), the
held-out loss, for the reward model the held-out reward accuracy (share of pairs where the chosen
answer scores above the rejected one), row counts (ties dropped for reward and DPO), the config
and the time taken.

========  ===============  =====================================  =========================
stage     TRL trainer      data                                   writes
========  ===============  =====================================  =========================
sft       SFTTrainer       prompt + chosen (as the completion)    causal LM or adapter
reward    RewardTrainer    prompt, chosen, rejected               1-output classifier
dpo       DPOTrainer       prompt, chosen, rejected               causal LM or adapter
rl        GRPOTrainer      prompts; rewards from a reward model   causal LM or adapter
========  ===============  =====================================  =========================

On a CPU every stage trains in full precision (TRL defaults to bf16, which distorts CPU runs,
see MODELS.md) without gradient checkpointing; on a GPU in bf16 where the GPU supports it. Nothing
is reported to experiment trackers. The trainers show their own progress bars.

Multi-GPU and multi-node runs use Hugging Face Accelerate with the same entry point, e.g.
``accelerate launch --num_processes 4 -m crowdtune.cli train dpo --model DIR --data @hh-rlhf
--out runs/dpo`` (``accelerate config`` first to describe the machines); ``batch_size`` is then
per device. crowdtune has no launcher of its own.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdtune.training.data import STAGES, split_rows, stage_rows
from crowdtune.training.models import load_model, resolve_device

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "StageConfig",
    "StageMemoryError",
    "StageResult",
    "load_trained",
    "prompt_key",
    "read_stage_file",
    "run_dpo",
    "run_reward",
    "run_rl",
    "run_sft",
    "run_stage",
    "stage_split",
    "training_prompts",
]

#: TRL's default learning rate of each method (used when ``learning_rate`` is None).
DEFAULT_LEARNING_RATES = {"sft": 2e-5, "reward": 1e-4, "dpo": 1e-6, "rl": 1e-6}
#: The file every stage writes beside the checkpoint.
METRICS_FILE = "metrics.json"


class StageMemoryError(MemoryError):
    """Training ran out of memory; the message suggests ``--lora`` and a smaller batch."""


@dataclass
class StageConfig:
    """What a training stage trains, on what, and where it writes.

    Parameters
    ----------
    model
        ``"tiny"``, ``"smollm2"``, a checkpoint directory (the output of an earlier stage,
        adapters included) or a hub name (see :func:`crowdtune.training.load_model`).
    data
        A source: ``@hh-rlhf``, ``@car``, an arena CSV, a comparison JSONL, a TRL JSONL.
    out
        Folder for the checkpoint (or adapter), tokenizer and ``metrics.json``.
    lora
        Train a LoRA adapter (r 8, alpha 16, every linear layer) instead of every weight.
    max_steps
        Stop after this many optimizer steps (None: ``epochs`` decides).
    epochs
        Passes over the training rows when ``max_steps`` is None.
    learning_rate
        None: TRL's default of the method (:data:`DEFAULT_LEARNING_RATES`).
    batch_size
        Rows per step and device (for ``rl``: completions per step, a multiple of
        ``num_generations``).
    eval_share
        Share of the rows held out for evaluation (0: none).
    max_eval_rows
        Cap on held-out rows (scoring thousands of pairs on a CPU takes long).
    max_rows
        Use only this many rows (after shuffling with ``seed``); None: all.
    seed
        Seed of the split, the shuffling, new weights and sampling.
    max_length
        Tokens per sequence (prompt and answer). SFT and DPO truncate longer ones and drop rows
        whose prompt alone fills it; the reward stage drops pairs longer than it (TRL's
        behaviour; ``rows.train_used`` / ``rows.eval_used`` in ``metrics.json`` count the rows
        kept).
    reward_model
        ``rl`` only: the folder ``run_reward`` wrote.
    num_generations
        ``rl`` only: completions sampled per prompt (GRPO compares them with each other).
    max_completion_length
        ``rl`` only: new tokens per completion.
    logging_steps
        Log the loss every this many steps.
    progress
        Show the trainers' progress bars.
    callbacks
        ``transformers.TrainerCallback`` objects added to the trainer (progress reports, a
        heartbeat, cancellation: an exception raised in one stops the training and propagates).
        Not written to ``metrics.json``: they are live objects, not settings.
    """

    model: str = "tiny"
    data: str = "@car"
    out: Path = Path("runs/stage")
    lora: bool = False
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float | None = None
    batch_size: int = 8
    eval_share: float = 0.1
    max_eval_rows: int | None = 256
    max_rows: int | None = None
    seed: int = 0
    max_length: int = 512
    reward_model: Path | None = None
    num_generations: int = 4
    max_completion_length: int = 64
    logging_steps: int = 1
    progress: bool = True
    callbacks: Sequence[Any] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.reward_model is not None:
            self.reward_model = Path(self.reward_model)
        for name in ("batch_size", "max_length", "num_generations", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.eval_share < 1:
            raise ValueError(f"eval_share must be in [0, 1), got {self.eval_share}")


@dataclass
class StageResult:
    """Where a stage wrote, and what ``metrics.json`` holds."""

    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# shared pieces


def _training_args(config_class: type, stage: str, config: StageConfig, **extra: Any) -> Any:
    device, bf16 = resolve_device()
    cuda = device.type == "cuda"
    return config_class(
        output_dir=str(config.out),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate or DEFAULT_LEARNING_RATES[stage],
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="no",  # evaluated once, at the end
        save_strategy="no",  # saved once, at the end, by the stage
        report_to="none",
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=not config.progress,
        **extra,
    )


def _lora_config(task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type=task_type
    )


def read_stage_file(folder: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` a stage wrote in ``folder`` (None: not a stage's folder)."""
    path = folder / METRICS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def load_trained(
    name: str | Path, task: str = "causal-lm", *, merge: bool = True, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model by name, or the output of a stage (a full checkpoint or a LoRA adapter).

    An adapter folder is loaded on top of the base model its ``metrics.json`` names (for
    ``"tiny"``, rebuilt from the same seed) and, with ``merge``, merged into it, so the result
    is a plain model. Everything else goes to :func:`crowdtune.training.load_model`.
    ``kwargs`` go to ``load_model`` (e.g. ``num_labels=1`` for a reward model).
    """
    folder = Path(name).expanduser()
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        stage = read_stage_file(folder) or {}
        base_config = stage.get("config", {})
        base = base_config.get("model")
        if base is None:
            adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            base = adapter.get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{folder}: a LoRA adapter whose base model is not recorded")
        kwargs["seed"] = base_config.get("seed", kwargs.get("seed", 0))  # rebuilds "tiny" alike
        model, tokenizer = load_trained(base, task, **kwargs)
        peft_model = PeftModel.from_pretrained(model, str(folder))
        loaded: Any = peft_model.merge_and_unload() if merge else peft_model
        return loaded, tokenizer
    return load_model(str(name), task, **kwargs)


def _loss_by_step(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [
        {"step": int(entry["step"]), "loss": float(entry["loss"])}
        for entry in log_history
        if "loss" in entry and "step" in entry and math.isfinite(float(entry["loss"]))
    ]


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text
    )


def _train(trainer: Any, config: StageConfig) -> float:
    """Run ``trainer.train()``; turn running out of memory into advice. Returns seconds."""
    started = time.perf_counter()
    try:
        trainer.train()
    except (RuntimeError, MemoryError) as exc:
        if _is_out_of_memory(exc):
            raise StageMemoryError(
                f"out of memory training {config.model!r} with batch size {config.batch_size} "
                f"and max length {config.max_length}: train a LoRA adapter (--lora) and/or use a "
                "smaller batch (--batch-size) or shorter sequences"
            ) from exc
        raise
    return time.perf_counter() - started


def stage_split(
    stage: str, config: StageConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """The rows a stage trains on and holds out, and their counts: a pure function of the
    source, ``max_rows``, ``eval_share``, ``max_eval_rows`` and ``seed``, so that the split can
    be rebuilt later from the config in ``metrics.json`` (:func:`training_prompts`)."""
    data = stage_rows(config.data, stage, seed=config.seed)
    rows = data.rows
    if config.max_rows is not None and len(rows) > config.max_rows:
        rows, _ = split_rows(rows, 0.0, seed=config.seed)
        rows = rows[: config.max_rows]
    train, held_out = split_rows(rows, config.eval_share, seed=config.seed)
    if config.max_eval_rows is not None:
        held_out = held_out[: config.max_eval_rows]
    counts = {**data.counts, "used": len(rows), "train": len(train), "eval": len(held_out)}
    return train, held_out, counts


def prompt_key(prompt: Any) -> str:
    """A hashable key of a prompt (a string or a list of messages)."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def training_prompts(folder: str | Path) -> dict[str, set[str]]:
    """The prompts (as :func:`prompt_key`) every stage behind ``folder`` trained on, by source.

    Follows the chain of stages: a stage's ``config.model`` that is itself a stage folder (an
    SFT checkpoint a DPO run started from) is read too. The training rows are rebuilt from each
    ``metrics.json`` with :func:`stage_split`. A folder without ``metrics.json`` (a checkpoint
    trained elsewhere) or a built-in name contributes nothing.
    """
    found: dict[str, set[str]] = {}
    seen: set[Path] = set()
    pending = [Path(folder).expanduser()]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        recorded = read_stage_file(current) if current.is_dir() else None
        if not recorded or recorded.get("stage") not in STAGES or "config" not in recorded:
            continue
        known = {f.name for f in fields(StageConfig)}
        config = StageConfig(**{k: v for k, v in recorded["config"].items() if k in known})
        train, _, _ = stage_split(recorded["stage"], config)
        found.setdefault(config.data, set()).update(prompt_key(row["prompt"]) for row in train)
        pending.append(Path(str(config.model)).expanduser())
    return found


def _datasets(stage: str, config: StageConfig) -> tuple[Any, Any, dict[str, int]]:
    from datasets import Dataset

    train, held_out, counts = stage_split(stage, config)
    train_set = Dataset.from_list(train)
    eval_set = Dataset.from_list(held_out) if held_out else None
    return train_set, eval_set, counts


def _finish(
    stage: str,
    config: StageConfig,
    trainer: Any,
    tokenizer: PreTrainedTokenizerBase,
    counts: dict[str, int],
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> StageResult:
    config.out.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(config.out))
    tokenizer.save_pretrained(str(config.out))
    losses = _loss_by_step(trainer.state.log_history)
    # What the trainer kept: TRL drops rows that do not fit max_length (see StageConfig).
    counts = {**counts, "train_used": len(trainer.train_dataset)}
    if trainer.eval_dataset is not None:
        counts["eval_used"] = len(trainer.eval_dataset)
    metrics: dict[str, Any] = {
        "stage": stage,
        "trainer": type(trainer).__name__,
        "checkpoint": "lora-adapter" if config.lora else "full",
        "config": _recorded_config(config),
        "rows": counts,
        "steps": int(trainer.state.global_step),
        "train_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / max(1, trainer.state.global_step), 4),
        "loss_by_step": losses,
        "first_loss": losses[0]["loss"] if losses else None,
        "last_loss": losses[-1]["loss"] if losses else None,
        **(extra or {}),
    }
    (config.out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return StageResult(config.out, metrics)


def _recorded_config(config: StageConfig) -> dict[str, Any]:
    """The settings of ``config`` as JSON values, without the live callbacks (``asdict`` would
    deep-copy them, and a callback holding a lock or a database session cannot be copied)."""
    recorded = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "callbacks"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in recorded.items()}


def _evaluate(trainer: Any, eval_set: Any) -> dict[str, float]:
    if eval_set is None:
        return {}
    results = trainer.evaluate()
    return {key: float(value) for key, value in results.items() if isinstance(value, int | float)}


# ---------------------------------------------------------------------------------------------
# the stages


def run_sft(config: StageConfig) -> StageResult:
    """Supervised fine-tuning on each prompt and its chosen (or given) completion.

    The loss counts the completion tokens only (TRL's prompt-completion format).
    """
    from trl import SFTConfig, SFTTrainer

    train_set, eval_set, counts = _datasets("sft", config)
    model, tokenizer = load_trained(config.model, "causal-lm", seed=config.seed)
    args = _training_args(SFTConfig, "sft", config, max_length=config.max_length)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=_lora_config("CAUSAL_LM") if config.lora else None,
        callbacks=list(config.callbacks),
    )
    seconds = _train(trainer, config)
    evaluation = _evaluate(trainer, eval_set)
    return _finish(
        "sft",
        config,
        trainer,
        tokenizer,
        counts,
        seconds,
        {"eval": evaluation, "eval_loss": evaluation.get("eval_loss")},
    )


def _held_out_accuracy(trainer: Any) -> tuple[float | None, int]:
    """Share of held-out pairs whose chosen answer scores above the rejected one (ties count
    as misses), computed pair by pair rather than averaged over batches."""
    import torch

    if trainer.eval_dataset is None:
        return None, 0
    model = trainer.model
    model.eval()
    wins = total = 0
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            batch = trainer._prepare_inputs(batch)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            chosen, rejected = torch.chunk(logits.logits.squeeze(-1), chunks=2)
            wins += int((chosen > rejected).sum())
            total += int(chosen.numel())
    return (wins / total if total else None), total


def run_reward(config: StageConfig) -> StageResult:
    """A reward model: one score per conversation, trained so that chosen > rejected
    (Bradley–Terry loss); ``metrics.json`` adds ``reward_accuracy`` on the held-out pairs."""
    from trl import RewardConfig, RewardTrainer

    train_set, eval_set, counts = _datasets("reward", config)
    model, tokenizer = load_trained(
        config.model, "sequence-classification", num_labels=1, seed=config.seed
    )
    args = _training_args(RewardConfig, "reward", config, max_length=config.max_length)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=_lora_config("SEQ_CLS") if config.lora else None,
        callbacks=list(config.callbacks),
    )
    seconds = _train(trainer, config)
    evaluation = _evaluate(trainer, eval_set)
    accuracy, pairs = _held_out_accuracy(trainer)
    return _finish(
        "reward",
        config,
        trainer,
        tokenizer,
        counts,
        seconds,
        {
            "eval": evaluation,
            "eval_loss": evaluation.get("eval_loss"),
            "reward_accuracy": accuracy,
            "reward_accuracy_pairs": pairs,
        },
    )


def run_dpo(config: StageConfig) -> StageResult:
    """Direct preference optimisation against a frozen copy of the starting model (with
    ``lora``, the reference is the model with the adapter switched off)."""
    from trl import DPOConfig, DPOTrainer

    train_set, eval_set, counts = _datasets("dpo", config)
    model, tokenizer = load_trained(config.model, "causal-lm", seed=config.seed)
    args = _training_args(DPOConfig, "dpo", config, max_length=config.max_length)
    # TRL would reload the reference from the model's hub name, which a model built here (tiny)
    # or merged from an adapter does not have: hand it a frozen copy instead.
    reference = None if config.lora else copy.deepcopy(model).eval()
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=_lora_config("CAUSAL_LM") if config.lora else None,
        callbacks=list(config.callbacks),
    )
    seconds = _train(trainer, config)
    evaluation = _evaluate(trainer, eval_set)
    return _finish(
        "dpo",
        config,
        trainer,
        tokenizer,
        counts,
        seconds,
        {
            "eval": evaluation,
            "eval_loss": evaluation.get("eval_loss"),
            "eval_reward_accuracy": evaluation.get("eval_rewards/accuracies"),
        },
    )


def run_rl(config: StageConfig) -> StageResult:
    """Reinforcement learning with GRPO: sample ``num_generations`` completions per prompt,
    score them with the reward model ``config.reward_model`` (the folder ``run_reward`` wrote),
    and push the policy toward the better ones. ``metrics.json`` adds the mean reward by step;
    the loss of a policy-gradient method is no measure of progress, the reward is."""
    from trl import GRPOConfig, GRPOTrainer

    if config.reward_model is None:
        raise ValueError("the rl stage needs reward_model (the folder the reward stage wrote)")
    if config.batch_size % config.num_generations:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be a multiple of num_generations "
            f"({config.num_generations}): GRPO compares the completions of one prompt in a batch"
        )
    train_set, eval_set, counts = _datasets("rl", config)
    model, tokenizer = load_trained(config.model, "causal-lm", seed=config.seed)
    reward_model, reward_tokenizer = load_trained(
        config.reward_model, "sequence-classification", num_labels=1
    )
    args = _training_args(
        GRPOConfig,
        "rl",
        config,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizer,
        peft_config=_lora_config("CAUSAL_LM") if config.lora else None,
        callbacks=list(config.callbacks),
    )
    seconds = _train(trainer, config)
    evaluation = _evaluate(trainer, eval_set)
    rewards = [
        {"step": int(entry["step"]), "reward": float(entry["reward"])}
        for entry in trainer.state.log_history
        if "reward" in entry and "step" in entry
    ]
    return _finish(
        "rl",
        config,
        trainer,
        tokenizer,
        counts,
        seconds,
        {
            "eval": evaluation,
            "eval_loss": evaluation.get("eval_loss"),
            "eval_reward": evaluation.get("eval_reward"),
            "reward_by_step": rewards,
        },
    )


_RUNNERS: dict[str, Callable[[StageConfig], StageResult]] = {
    "sft": run_sft,
    "reward": run_reward,
    "dpo": run_dpo,
    "rl": run_rl,
}


def run_stage(stage: str, config: StageConfig) -> StageResult:
    """Run the stage of that name (one of :data:`crowdtune.training.data.STAGES`)."""
    if stage not in _RUNNERS:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return _RUNNERS[stage](config)
