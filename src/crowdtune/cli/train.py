"""``crowdtune train``: fine-tune language models on feedback with TRL (SFT, reward, DPO, RL).

One command per method, the same options for all: switching method is one word. Each writes the
model (or, with ``--lora``, a LoRA adapter), its tokenizer and ``metrics.json`` (loss by step,
held-out loss, reward accuracy for the reward model) to ``--out``. On a CPU every stage trains in
full precision. For several GPUs or machines, start the same entry point with Hugging Face
Accelerate: ``accelerate launch -m crowdtune.cli train dpo --model DIR --data @hh-rlhf --out
runs/dpo`` (after ``accelerate config``); ``--batch-size`` is then per device.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from crowdtune.cli.common import JsonOpt, err, fail

train_app = typer.Typer(
    help="Fine-tune language models on feedback with TRL.\n\n"
    "One command per method, the same options for all. Each writes the checkpoint (or LoRA "
    "adapter), its tokenizer and metrics.json to --out. On several GPUs or machines, start the "
    "same entry point with Hugging Face Accelerate (after `accelerate config`; --batch-size is "
    "then per device):\n\n"
    "```\naccelerate launch -m crowdtune.cli train dpo \\\n"
    "    --model DIR --data @hh-rlhf --out runs/dpo\n```",
    no_args_is_help=True,
)

ModelOpt = typer.Option(
    "tiny",
    "--model",
    help="tiny (2-layer GPT-2 for tests), smollm2 (SmolLM2-135M-Instruct, offline), the --out "
    "folder of an earlier stage, any checkpoint directory, or a hub name where a hub is reachable.",
)
DataOpt = typer.Option(
    ...,
    "--data",
    help="SRC: @hh-rlhf, @car (see `crowdtune data list`), an arena CSV, a crowdtune JSONL or a "
    "TRL JSONL (prompt, chosen, rejected; SFT also prompt, completion) such as the feedback "
    "server's exports.",
)
OutOpt = typer.Option(..., "--out", help="Folder for the checkpoint, tokenizer and metrics.json.")
LoraOpt = typer.Option(
    False, "--lora/--full", help="Train a LoRA adapter (r 8, every linear layer) or all weights."
)
StepsOpt = typer.Option(
    None, "--max-steps", help="Stop after N optimizer steps (overrides --epochs)."
)
EpochsOpt = typer.Option(1.0, "--epochs", help="Passes over the training rows.")
LrOpt = typer.Option(
    None,
    "--learning-rate",
    help="Default: TRL's for the method (sft 2e-5, reward 1e-4, dpo 1e-6, rl 1e-6).",
)
BatchOpt = typer.Option(8, "--batch-size", help="Rows per step and device.")
EvalOpt = typer.Option(0.1, "--eval-share", help="Share of rows held out for evaluation.")
MaxRowsOpt = typer.Option(None, "--max-rows", help="Use only N rows (shuffled with --seed).")
LengthOpt = typer.Option(512, "--max-length", help="Tokens per sequence; longer ones are cut.")
SeedOpt = typer.Option(0, "--seed", help="Seed of the split, shuffling, new weights and sampling.")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show progress bars on stderr.")


def _run(stage: str, **options: object) -> None:
    from crowdtune.training.data import StageDataError
    from crowdtune.training.models import UnknownModelError
    from crowdtune.training.stages import StageConfig, StageMemoryError, run_stage

    as_json = bool(options.pop("as_json"))
    try:
        config = StageConfig(**options)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc))
    try:
        # The trainers print their logs to stdout; keep stdout for the result (--json).
        with contextlib.redirect_stdout(sys.stderr):
            result = run_stage(stage, config)
    except (UnknownModelError, StageDataError, StageMemoryError, FileNotFoundError) as exc:
        fail(str(exc))
    except ValueError as exc:  # bad data from the comparison loaders, or bad settings
        fail(str(exc))
    metrics = result.metrics
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    summary = {
        key: metrics.get(key)
        for key in (
            "steps",
            "first_loss",
            "last_loss",
            "eval_loss",
            "reward_accuracy",
            "eval_reward",
        )
        if metrics.get(key) is not None
    }
    err.print(f"{stage}: rows {metrics['rows']}", highlight=False)
    typer.echo(
        f"wrote {metrics['checkpoint']} checkpoint and metrics.json to {result.out}: "
        + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
    )


def _preference_stage(stage: str, doc: str) -> None:
    """Register ``crowdtune train <stage>`` with the options every stage shares."""

    def command(
        model: str = ModelOpt,
        data: str = DataOpt,
        out: Path = OutOpt,
        lora: bool = LoraOpt,
        max_steps: int | None = StepsOpt,
        epochs: float = EpochsOpt,
        learning_rate: float | None = LrOpt,
        batch_size: int = BatchOpt,
        eval_share: float = EvalOpt,
        max_rows: int | None = MaxRowsOpt,
        max_length: int = LengthOpt,
        seed: int = SeedOpt,
        progress: bool = ProgressOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        options = locals()
        options.pop("stage")  # the closure's variable, which locals() lists too
        _run(stage, **options)

    command.__doc__ = doc
    train_app.command(stage)(command)


_preference_stage(
    "sft",
    "Supervised fine-tuning on prompts and their chosen answers.\n\n"
    "The loss is on the answer only.",
)
_preference_stage(
    "reward",
    "A reward model (one score per answer) from preference pairs.\n\n"
    "Trains on prompt/chosen/rejected pairs; ties are dropped. metrics.json holds the held-out "
    "reward accuracy.",
)
_preference_stage(
    "dpo",
    "Direct preference optimisation on preference pairs.\n\n"
    "Trains on prompt/chosen/rejected pairs; ties are dropped.",
)


@train_app.command("rl")
def rl_cmd(
    reward_model: Path = typer.Option(
        ..., "--reward-model", help="The --out folder of `crowdtune train reward`."
    ),
    model: str = ModelOpt,
    data: str = DataOpt,
    out: Path = OutOpt,
    lora: bool = LoraOpt,
    max_steps: int | None = StepsOpt,
    epochs: float = EpochsOpt,
    learning_rate: float | None = LrOpt,
    batch_size: int = BatchOpt,
    num_generations: int = typer.Option(
        4, "--num-generations", help="Completions per prompt (--batch-size must be a multiple)."
    ),
    max_completion_length: int = typer.Option(
        64, "--max-completion-length", help="New tokens per completion."
    ),
    eval_share: float = EvalOpt,
    max_rows: int | None = MaxRowsOpt,
    max_length: int = LengthOpt,
    seed: int = SeedOpt,
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Reinforcement learning (TRL's GRPO), rewarded by a reward model.

    Generates --num-generations completions for each prompt of --data and rewards them with
    --reward-model.
    """
    if (
        not (reward_model / "config.json").is_file()
        and not (reward_model / "adapter_config.json").is_file()
    ):
        fail(f"--reward-model {reward_model}: no model there (expected the --out of train reward)")
    _run("rl", **locals())
