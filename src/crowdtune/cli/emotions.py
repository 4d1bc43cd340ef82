"""``crowdtune emotions``: the GoEmotions emotion space (classifier quality, emotion targets).

The default classifier (MiniLM embeddings and word n-grams, one logistic regression per label,
thresholds tuned on dev) is fitted on GoEmotions train on first use (about 50 s once the embeddings
are cached) and kept in the cache directory ($CROWDTUNE_CACHE, else ~/.cache/crowdtune).
Embedding the 54k GoEmotions texts with MiniLM takes 4-30 minutes on 2 cores, depending on what
else runs, once; the vectors are cached.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail

if TYPE_CHECKING:
    from crowdtune.spaces.emotions import EmotionClassifier

emotions_app = typer.Typer(
    help="The emotion space: a GoEmotions classifier (28 scores per text) and emotion targets.",
    no_args_is_help=True,
)


@emotions_app.callback()
def emotions_main() -> None:
    """The GoEmotions emotion space (27 emotions plus neutral)."""


def _classifier(progress: bool) -> EmotionClassifier:
    from crowdtune.spaces.emotions import load_default

    err.print("loading the emotion classifier (fitting it on GoEmotions train if not cached)")
    return load_default(progress=None if progress else False)


@emotions_app.command("evaluate")
def evaluate_cmd(
    split: str = typer.Option("test", "--split", help="GoEmotions split: test, dev or train."),
    limit: int | None = typer.Option(None, "--limit", help="Score only the first N rows."),
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Micro- and macro-F1 of the default classifier on a GoEmotions split (per-label thresholds
    tuned on dev), with per-label F1 in the table. Anchors on test: RoBERTa-base
    (SamLowe/roberta-base-go_emotions) micro-F1 0.585 at threshold 0.5; the GoEmotions paper's
    BERT-base macro-F1 0.46. --json prints {"micro_f1", "macro_f1", "n"}."""
    from crowdtune.datasets.goemotions import GOEMOTIONS_SPLITS
    from crowdtune.datasets.home import DatasetFormatError, DatasetMissingError
    from crowdtune.spaces.emotions import evaluate_emotions

    if split not in GOEMOTIONS_SPLITS:
        fail(f"unknown --split {split!r}; choose one of: {', '.join(GOEMOTIONS_SPLITS)}")
    if limit is not None and limit < 1:
        fail("--limit must be >= 1")
    start = time.perf_counter()
    try:
        classifier = _classifier(progress)
        result = evaluate_emotions(classifier, split=split, limit=limit)
    except (DatasetMissingError, DatasetFormatError) as exc:
        fail(str(exc))
    seconds = time.perf_counter() - start
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in ("micro_f1", "macro_f1", "n")}))
        return
    table = Table(title=f"GoEmotions {split}: per-label F1 (n = {result['n']:,})")
    for column in ("emotion", "F1", "threshold"):
        table.add_column(column, justify="left" if column == "emotion" else "right")
    for name, f1, threshold in zip(
        result["label_names"], result["per_label_f1"], classifier.thresholds_, strict=True
    ):
        table.add_row(name, f"{f1:.3f}", f"{threshold:.2f}")
    console = Console()
    console.print(table)
    console.print(
        f"micro-F1 {result['micro_f1']:.3f}, macro-F1 {result['macro_f1']:.3f} (tuned "
        f"thresholds); at threshold 0.5: micro {result['micro_f1_at_05']:.3f}, macro "
        f"{result['macro_f1_at_05']:.3f}. Anchors: RoBERTa micro 0.585 (0.5), BERT-base "
        f"macro 0.46. {seconds:.1f} s"
    )


@emotions_app.command("target")
def target_cmd(
    emotion: str = typer.Option(..., "--emotion", help="One of the 28 GoEmotions labels."),
    k: int = typer.Option(100, "--k", help="Neighbours of the top sentence (published: 100)."),
    split: str = typer.Option("test", "--pool", help="GoEmotions split used as the pool."),
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The target of an emotion: the pool sentence scoring highest on it plus its k nearest
    neighbours in the score space; prints their mean (centre) and 25-75 % band per emotion.
    --json prints {"emotion", "sentence", "top_index", "k", "labels", "centre", "low", "high",
    "indices"}."""
    from crowdtune.datasets.goemotions import GOEMOTIONS_LABELS, GOEMOTIONS_SPLITS
    from crowdtune.datasets.home import DatasetFormatError, DatasetMissingError
    from crowdtune.spaces.emotions import emotion_target, pool_scores

    if emotion not in GOEMOTIONS_LABELS:
        fail(f"unknown --emotion {emotion!r}; choose one of: {', '.join(GOEMOTIONS_LABELS)}")
    if split not in GOEMOTIONS_SPLITS:
        fail(f"unknown --pool {split!r}; choose one of: {', '.join(GOEMOTIONS_SPLITS)}")
    if k < 0:
        fail("--k must be >= 0")
    try:
        # The default classifier's scores of a split are cached beside it (pool_scores).
        texts, scores = pool_scores(
            split=split, progress=(lambda line: err.print(line, markup=False)) if progress else None
        )
    except (DatasetMissingError, DatasetFormatError) as exc:
        fail(str(exc))
    if k >= len(texts):
        fail(f"--k must be below the pool size {len(texts):,}")
    target = emotion_target(emotion, scores, k=k)
    summary = {"sentence": texts[target.top_index], **target.to_dict()}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"target of {emotion}: top sentence + {k} nearest neighbours")
    for column in ("emotion", "centre", "25 %", "75 %"):
        table.add_column(column, justify="left" if column == "emotion" else "right")
    order = sorted(range(len(target.centre)), key=lambda i: -target.centre[i])
    for i in order:
        table.add_row(
            target.label_names[i],
            f"{target.centre[i]:.3f}",
            f"{target.low[i]:.3f}",
            f"{target.high[i]:.3f}",
        )
    console = Console()
    console.print(f"top sentence (row {target.top_index}): {summary['sentence']}", markup=False)
    console.print(table)
