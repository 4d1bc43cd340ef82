"""``crowdtune assess``: does a tuned model beat its base on held-out prompts, by a reward model?

Generates from both models, scores the answers with the reward model, and prints the tuned
model's win rate (ties count half, 95% percentile bootstrap interval over prompts) and its
length-controlled win rate (AlpacaEval 2.0 style: the win rate a logistic regression on the
length difference predicts at equal lengths); see :mod:`crowdtune.training.assess`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, err, fail


def print_assessment(result: Any, title: str) -> None:
    """The summary of an :class:`~crowdtune.training.assess.AssessResult` as a table."""
    table = Table(title=title)
    for column in ("measure", "value"):
        table.add_column(column)
    low, high = result.win_rate_ci
    table.add_row("win rate of tuned [95% CI]", f"{result.win_rate:.1%} [{low:.1%}, {high:.1%}]")
    low, high = result.lc_win_rate_ci
    table.add_row(
        "length-controlled win rate [95% CI]",
        f"{result.lc_win_rate:.1%} [{low:.1%}, {high:.1%}]",
    )
    table.add_row("wins / ties / losses", f"{result.wins} / {result.ties} / {result.losses}")
    table.add_row("answers changed by tuning", f"{result.changed} of {result.n}")
    for side in ("base", "tuned"):
        table.add_row(
            f"{side}: mean reward, length (chars, tokens)",
            f"{result.mean_reward[side]:.3f}, {result.mean_length[side]:.0f}, "
            f"{result.mean_new_tokens[side]:.1f}",
        )
    counts = result.prompts
    table.add_row(
        "prompts",
        f"{counts['used']} of {counts['available']} in {counts['source']} "
        f"({counts['excluded_trained']} left out: used in training)",
    )
    Console().print(table)


def assess_cmd(
    base: str = typer.Option(
        ..., "--base", help="The model before tuning: tiny, smollm2, a stage's --out, a checkpoint."
    ),
    tuned: str = typer.Option(
        ..., "--tuned", help="The tuned model (e.g. the --out of train dpo)."
    ),
    prompts: str = typer.Option(
        ...,
        "--prompts",
        help="SRC of prompts: @car:test, @hh-rlhf, a JSONL ... Prompts any stage behind the three "
        "models trained on are left out (rebuilt from their metrics.json).",
    ),
    reward_model: Path = typer.Option(
        ..., "--reward-model", help="The --out folder of `crowdtune train reward`."
    ),
    n_prompts: int = typer.Option(64, "--n-prompts", help="Held-out prompts to assess on."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="New tokens per answer."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
    sample: bool = typer.Option(
        False, "--sample/--greedy", help="Sample answers (temperature 1) or decode greedily."
    ),
    chat_template: bool = typer.Option(
        False,
        "--chat-template/--raw-prompts",
        help="Wrap plain-text prompts in the chat template (conversations always use it). "
        "Default raw, as the training stages see plain-text prompts.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompt choice, sampling, bootstrap."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the per-prompt rows (answers, rewards, lengths) as JSONL."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Win rate of a tuned model over its base, by a reward model.

    Generates answers from --base and --tuned on held-out prompts and scores them with
    --reward-model. Prints the win rate of --tuned (ties count half; 95% percentile bootstrap
    interval over prompts) and its length-controlled win rate (AlpacaEval 2.0 style: the win rate
    that a logistic regression on the length difference predicts at equal lengths).
    """
    from crowdtune.training.assess import assess
    from crowdtune.training.data import StageDataError
    from crowdtune.training.models import UnknownModelError

    if not reward_model.is_dir():
        fail(
            f"--reward-model {reward_model}: no such folder (the --out of `crowdtune train reward`)"
        )
    if n_prompts < 1 or max_new_tokens < 1 or batch_size < 1:
        fail("--n-prompts, --max-new-tokens and --batch-size must be at least 1")
    try:
        # transformers may print to stdout; keep stdout for the result (--json).
        with contextlib.redirect_stdout(sys.stderr):
            result = assess(
                base, tuned, prompts, reward_model, n_prompts, max_new_tokens, seed, batch_size,
                do_sample=sample, chat_template=chat_template,
            )  # fmt: skip
    except (UnknownModelError, StageDataError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as lines:
            for row in result.rows:
                lines.write(json.dumps(row, ensure_ascii=False) + "\n")
        err.print(f"wrote {len(result.rows)} rows to {out}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    print_assessment(result, f"{tuned} against {base}, judged by {reward_model}")
