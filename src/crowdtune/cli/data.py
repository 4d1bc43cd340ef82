"""``crowdtune data``: the data home, the cache directory, downloads and exports."""

from __future__ import annotations

from pathlib import Path

import typer

from crowdtune.cli.common import (
    fail,
)

data_app = typer.Typer(
    help="Datasets: the data home, downloads and exports.\n\n"
    "The data home is where datasets live; `crowdtune data home` prints it."
)


@data_app.command("home")
def data_home_cmd() -> None:
    """Print the data home ($CROWDTUNE_DATA, else ~/.cache/crowdtune)."""
    from crowdtune.datasets import data_home

    typer.echo(str(data_home()))


@data_app.command("cache")
def data_cache_cmd() -> None:
    """Print the cache directory, where derived files go.

    It is $CROWDTUNE_CACHE, else ~/.cache/crowdtune: converted models, embeddings, fitted
    classifiers and scorers go there, never into the data home.
    """
    from crowdtune.datasets import cache_home

    typer.echo(str(cache_home()))


@data_app.command("download")
def data_download_cmd(
    name: str = typer.Argument(..., help="Dataset to fetch: movielens."),
    url: str | None = typer.Option(None, "--url", help="Fetch from this URL instead."),
) -> None:
    """Download a dataset from its canonical source into the data home."""
    from crowdtune.datasets import MOVIELENS_URL, download_movielens

    if name != "movielens":
        fail(f"unknown dataset {name!r}; downloadable: movielens")
    try:
        folder = download_movielens(url=url or MOVIELENS_URL)
    except OSError as exc:
        fail(f"could not download {name}: {exc}")
    typer.echo(str(folder))


@data_app.command("list")
def data_list_cmd() -> None:
    """List the datasets that --data accepts as @NAME.

    Comparisons (pairwise votes: preference models, leaderboards, pairwise projects) first,
    then revisions (an answer and a better version of it: the items of revision and rating
    projects, `crowdtune projects import`). One line each: the name, its kind, a description.
    """
    from crowdtune.datasets.registry import PREFERENCE_DATASETS, REVISION_DATASETS

    for name, dataset in PREFERENCE_DATASETS.items():
        typer.echo(f"@{name}\tcomparisons\t{dataset.description}")
    for name, revisions in REVISION_DATASETS.items():
        typer.echo(f"@{name}\trevisions\t{revisions.description}")


EXPORT_FORMATS = ("arena-csv", "jsonl", "trl")


@data_app.command("export")
def data_export_cmd(
    data: list[str] = typer.Option(
        ..., "--data", help="SRC: a file or @dataset (see `crowdtune data list`); repeatable."
    ),
    out: Path = typer.Option(..., "--out", help="File to write (.gz compresses)."),
    export_format: str = typer.Option(
        "jsonl",
        "--format",
        help="arena-csv (the Kaggle competition's columns), jsonl (one Comparison per line) or "
        "trl (prompt, chosen, rejected for TRL's reward and DPO trainers).",
    ),
    ties: str = typer.Option(
        "drop", "--ties", help="trl only: drop ties, or keep them with a boolean `tie` field."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the A/B randomisation of @datasets."),
) -> None:
    """Convert comparisons from any source into one file."""
    from crowdtune.cli.preference import load_records
    from crowdtune.datasets.comparisons import write_arena_csv, write_jsonl, write_trl_jsonl

    if export_format not in EXPORT_FORMATS:
        fail(f"unknown --format {export_format!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    if ties not in ("drop", "keep"):
        fail(f"unknown --ties {ties!r}; choose drop or keep")
    records = load_records(data, seed)
    try:
        if export_format == "arena-csv":
            write_arena_csv(records, out)
        elif export_format == "jsonl":
            write_jsonl(records, out)
        else:
            write_trl_jsonl(records, out, ties="keep" if ties == "keep" else "drop")
    except ValueError as exc:
        fail(f"--out {out}: {exc}")
    dropped = sum(r.verdict.name == "TIE" for r in records) if export_format == "trl" else 0
    dropped = dropped if ties == "drop" else 0
    note = f" ({dropped:,} ties dropped)" if dropped else ""
    typer.echo(f"wrote {len(records) - dropped:,} comparisons to {out}{note}")
