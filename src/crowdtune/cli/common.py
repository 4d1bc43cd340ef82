"""What every command shares: the error console, clean failures, progress bars, options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> None:
    """Print an error to stderr and exit with status 2 (bad input), before any work starts."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def progress_bar(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(k)``."""
    if not enabled:
        yield lambda k: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda k: progress.advance(task, k)


# ---------------------------------------------------------------------------------------------
# Options shared by the simulation commands; defaults are the published setting.
DatasetOpt = typer.Option("movielens", "--dataset", help="movielens (610 real users) or synthetic.")
UsersOpt = typer.Option(100, "--users", help="Users per run (N); one more becomes the expert.")
GroupsOpt = typer.Option(4, "--groups", help="Groups per round (G).")
RoundsOpt = typer.Option(100, "--rounds", help="Rounds per run (R).")
RunsOpt = typer.Option(50, "--runs", help="Seeded runs per setting.")
MetricOpt = typer.Option("l2", "--metric", help="l2, l1, dot (as published) or cosine.")
SchemeOpt = typer.Option(
    "rank",
    "--scheme",
    help="Point scheme: rank (published), marginal, regression (per-user ridge estimate, no extra "
    "cost) or leave-one-out (per-user share, one extra evaluation per group member).",
)
AdversariesOpt = typer.Option(
    0.0, "--adversaries", help="Share of users replaced by adversaries, in [0, 1)."
)
AdversaryKindOpt = typer.Option(
    "away",
    "--adversary-kind",
    help="away: the valid rating vector farthest from the expert; noise: uniform over the range.",
)
DeltaOpt = typer.Option(0.1, "--delta", help="Step toward the group centroid, in (0, 1].")
PowerOpt = typer.Option(2.0, "--weight-power", help="Centroid weights are points ** p.")
ErrorOpt = typer.Option(0.05, "--error-prob", help="Chance the evaluator swaps the best candidate.")
NoiseOpt = typer.Option(0.0, "--score-noise", help="SD of Gaussian noise on candidate scores.")
FloorOpt = typer.Option(0.4, "--explore-floor", help="Epsilon-greedy's minimum exploration rate.")
ScheduleOpt = typer.Option("linear", "--explore-schedule", help="linear, exponential or constant.")
PoolOpt = typer.Option(
    "random",
    "--user-pool",
    help="random: N+1 random MovieLens users per run; first: the first N+1 by id (published code).",
)
MissingOpt = typer.Option(
    "zero", "--missing", help="Unrated genres: zero (published) or user-mean."
)
DropOpt = typer.Option([], "--drop-genre", help="Drop a genre column (repeatable), e.g. IMAX.")
DimsOpt = typer.Option(20, "--dims", help="Dimensions of synthetic users.")
ThresholdOpt = typer.Option(
    5.0, "--threshold", help="Distance counted as 'reached' (published: 5)."
)
SeedOpt = typer.Option(1, "--seed", help="Seed of every run's random streams.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object to stdout.")
OutOpt = typer.Option(None, "--out", help="Write tables, summary.json and report.html here.")
FormatOpt = typer.Option("csv", "--table-format", help="csv or parquet.")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr.")
BackendOpt = typer.Option(
    "local", "--backend", help="local (processes on this machine) or ray (tasks on a Ray cluster)."
)
AddressOpt = typer.Option(
    None,
    "--address",
    help="Ray cluster address (ray://HEAD:10001, or auto); none starts a local Ray on --workers "
    "CPUs.",
)


def make_backend(backend: str, address: str | None, workers: int, kind: str = "process") -> Any:
    """The backend the options name, or a clean exit naming the bad option."""
    from crowdtune.parallel import get_backend

    try:
        return get_backend(backend, workers=workers, address=address, kind=kind)
    except ValueError as exc:
        fail(str(exc))
