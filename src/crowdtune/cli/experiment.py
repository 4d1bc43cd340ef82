"""``crowdtune experiment``: experiments with real language models.

``point-in-space`` fine-tunes a model toward an emotion target: single-model SFT on the k nearest
sentences against competitive selection of LoRA candidates and the random-winner ablation
(:mod:`crowdtune.crowd.point_in_space`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail, progress_bar

if TYPE_CHECKING:
    import pandas as pd

    from crowdtune.crowd.point_in_space import PointInSpaceConfig, PointInSpaceResult

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
    emotion: str = typer.Option(
        "joy",
        "--emotion",
        help="GoEmotions label of the target; several separated by commas, or 'all' for the 28 "
        "(each run in --out/EMOTION, a finished one with the same settings is kept, and "
        "summary.json compares the arms across emotions as published).",
    ),
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
    """The published point-in-space experiment with local models.

    Single-model SFT on the k training sentences nearest an emotion target (k = 33/66/100)
    against competitive selection (3 generations x 3 LoRA candidates on disjoint random subsets
    of 33/22/15 sentences; the winner picked on selection generations and reported on fresh ones)
    and the same schedule with a random winner. Writes results.csv, results.json, samples.jsonl,
    target.json and report.html to --out. `--json` prints the summary (distances per arm and
    generation with 95% t-intervals over replicates).
    """
    from crowdtune.crowd.point_in_space import PointInSpaceConfig
    from crowdtune.datasets.goemotions import GOEMOTIONS_LABELS

    emotions = (
        list(GOEMOTIONS_LABELS)
        if emotion.strip() == "all"
        else [e.strip() for e in emotion.split(",") if e.strip()]
    )
    unknown = [e for e in emotions if e not in GOEMOTIONS_LABELS]
    if unknown or not emotions:
        fail(
            f"unknown --emotion {', '.join(unknown) or repr(emotion)}; choose from: "
            f"{', '.join(GOEMOTIONS_LABELS)} (several separated by commas, or all)"
        )
    sizes = _sizes(subset_sizes, "--subset-sizes")
    try:
        config = PointInSpaceConfig(
            emotion=emotions[0],
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
    if len(emotions) > 1:
        _sweep_emotions(config, emotions, out, progress, as_json)
        return
    result = _run_one(config, out, progress)
    if as_json:
        typer.echo(
            json.dumps(
                {**result.summary, "band": result.band, "report": str(out / "report.html")},
                default=str,
            )
        )
        return
    table = Table(title=f"distance to the {emotion} target (mean [95% CI] over replicates)")
    for column in ("arm", "generation", "k", "distance"):
        table.add_column(column)
    for arm, entries in result.summary["arms"].items():
        for entry in entries:
            table.add_row(arm, str(entry["generation"]), str(entry["k"]), _with_ci(entry))
    console = Console()
    console.print(table)
    console.print(
        f"target band (25-75%): {result.band['low']:.3f}-{result.band['high']:.3f}; "
        f"report: {out / 'report.html'}",
        markup=False,
    )


def _with_ci(entry: dict[str, Any]) -> str:
    """``mean [low, high]`` from a :func:`crowdtune.stats.mean_ci` entry."""
    if entry["mean"] is None:
        return "-"
    low, high = entry["ci_low"], entry["ci_high"]
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{entry['mean']:.3f}{interval}"


def _run_one(config: PointInSpaceConfig, out: Path, progress: bool) -> PointInSpaceResult:
    """One emotion's run with a progress bar over trainings, then its report.html."""
    from crowdtune.crowd.point_in_space import record_point_in_space, trainings_per_replicate
    from crowdtune.reports.point_in_space import write_point_in_space_report

    total = trainings_per_replicate(config) * config.replicates
    with progress_bar(total, f"trainings ({config.emotion})", progress) as advance:
        result = record_point_in_space(
            config, out, advance=advance, log=lambda line: err.print(line, markup=False)
        )
    write_point_in_space_report(
        out / "report.html",
        result.table,
        result.summary,
        result.band,
        result.target,
        dataclasses.asdict(config),
    )
    return result


def _sweep_emotions(
    config: PointInSpaceConfig, emotions: list[str], out: Path, progress: bool, as_json: bool
) -> None:
    """Each emotion in ``out/EMOTION`` (a finished run with the same settings is kept), then
    ``out/summary.json``: the arms' last-generation distances compared across emotions."""
    from crowdtune.crowd.point_in_space import finished_run, summarize_emotions

    tables: dict[str, pd.DataFrame] = {}
    for position, emotion in enumerate(emotions, start=1):
        one = dataclasses.replace(config, emotion=emotion)
        folder = out / emotion
        table = finished_run(folder, one)
        if table is None:
            err.print(f"emotion {position}/{len(emotions)}: {emotion}", markup=False)
            table = _run_one(one, folder, progress).table
        else:
            err.print(
                f"emotion {position}/{len(emotions)}: {emotion} (finished in {folder}, kept)",
                markup=False,
            )
        tables[emotion] = table
    summary = summarize_emotions(tables)
    payload = {"config": {**dataclasses.asdict(config), "emotion": emotions}, **summary}
    (out / "summary.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8"
    )
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        return
    grid = Table(
        title="distance to each emotion's target at the last generation (mean over replicates)"
    )
    columns = list(summary["final"])  # base and the three arms
    for column in ("emotion", *columns):
        grid.add_column(column)
    for emotion, finals in summary["per_emotion"].items():
        grid.add_row(emotion, *(f"{finals[c]:.3f}" for c in columns))
    grid.add_row("mean [95% CI]", *(_with_ci(summary["final"][c]) for c in columns))
    console = Console()
    console.print(grid)
    for name, entry in summary["differences"].items():
        console.print(f"{name.replace('_', ' ')}: {_with_ci(entry)}", markup=False)
    console.print(
        f"summary: {out / 'summary.json'}; reports: {out}/EMOTION/report.html", markup=False
    )
