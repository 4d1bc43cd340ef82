"""``crowdtune experiment``: experiments with real language models.

``point-in-space`` fine-tunes a model toward an emotion target: single-model SFT on the k nearest
sentences against competitive selection of LoRA candidates and the random-winner ablation
(:mod:`crowdtune.crowd.point_in_space`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail, progress_bar

experiment_app = typer.Typer(
    help="Experiments with real language models (point in space).", no_args_is_help=True
)


@experiment_app.callback()
def experiment_main() -> None:
    """Experiments with real language models."""


def _sizes(text: str, option: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{option} expects comma-separated integers, got {text!r}")
        raise  # unreachable: fail exits
    if not sizes:
        fail(f"{option} expects at least one size")
    return sizes


@experiment_app.command("point-in-space")
def point_in_space_cmd(
    emotion: str = typer.Option("joy", "--emotion", help="GoEmotions label of the target."),
    model: str = typer.Option(
        "smollm2", "--model", help="smollm2, tiny (tests), a checkpoint directory or hub name."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for results, checkpoints and report.html."),
    replicates: int = typer.Option(1, "--replicates", help="Independent seeded replicates."),
    samples: int = typer.Option(20, "--samples", help="Generations per evaluation."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", help="Tokens per generation."),
    temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature."),
    k_single: str = typer.Option(
        "33,66,100", "--k-single", help="Training-set sizes of the single-model arm."
    ),
    subset_sizes: str = typer.Option(
        "33,22,15", "--subset-sizes", help="Sentences per candidate in each generation."
    ),
    candidates: int = typer.Option(3, "--candidates", help="Candidates per generation."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Optimizer steps per training (default: --epochs decides)."
    ),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over a training set."),
    learning_rate: float = typer.Option(2e-4, "--learning-rate", help="Learning rate."),
    batch_size: int = typer.Option(8, "--batch-size", help="Rows per optimizer step."),
    lora: bool = typer.Option(True, "--lora/--full", help="Train LoRA adapters or all weights."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first replicate."),
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The published point-in-space experiment with local models: single-model SFT on the k
    training sentences nearest an emotion target (k = 33/66/100) against competitive selection
    (3 generations x 3 LoRA candidates on disjoint random subsets of 33/22/15 sentences; the
    winner picked on selection generations and reported on fresh ones) and the same schedule
    with a random winner. Writes results.csv, results.json, samples.jsonl, target.json and
    report.html to --out. --json prints the summary (distances per arm and generation with 95%
    t-intervals over replicates)."""
    from crowdtune.crowd.point_in_space import (
        PointInSpaceConfig,
        run_point_in_space,
        trainings_per_replicate,
    )
    from crowdtune.datasets.goemotions import GOEMOTIONS_LABELS
    from crowdtune.reports.point_in_space import write_point_in_space_report

    if emotion not in GOEMOTIONS_LABELS:
        fail(f"unknown --emotion {emotion!r}; choose one of: {', '.join(GOEMOTIONS_LABELS)}")
    sizes = _sizes(subset_sizes, "--subset-sizes")
    try:
        config = PointInSpaceConfig(
            emotion=emotion,
            model=model,
            k_single=_sizes(k_single, "--k-single"),
            generations=len(sizes),
            candidates=candidates,
            subset_sizes=sizes,
            n_samples=samples,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            replicates=replicates,
            seed=seed,
            lora=lora,
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
        )
    except ValueError as exc:
        fail(str(exc))
        raise  # unreachable: fail exits
    total = trainings_per_replicate(config) * config.replicates
    with progress_bar(total, "trainings", progress) as advance:
        result = run_point_in_space(
            config, out, advance=advance, log=lambda line: err.print(line, markup=False)
        )
    report = write_point_in_space_report(
        out / "report.html",
        result.table,
        result.summary,
        result.band,
        result.target,
        dataclasses.asdict(config),
    )
    if as_json:
        payload = {**result.summary, "band": result.band, "report": str(report)}
        typer.echo(json.dumps(payload, default=str))
        return
    table = Table(title=f"distance to the {emotion} target (mean [95% CI] over replicates)")
    for column in ("arm", "generation", "k", "distance"):
        table.add_column(column)
    for arm, entries in result.summary["arms"].items():
        for entry in entries:
            low, high = entry["ci_low"], entry["ci_high"]
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
            table.add_row(
                arm, str(entry["generation"]), str(entry["k"]), f"{entry['mean']:.3f}{interval}"
            )
    console = Console()
    console.print(table)
    console.print(
        f"target band (25-75%): {result.band['low']:.3f}-{result.band['high']:.3f}; "
        f"report: {report}",
        markup=False,
    )
