"""The ``crowdtune`` command line: parses options, calls library functions, prints results.

Every command that computes numbers prints a table for people and, with ``--json``, one JSON
object on stdout for scripts. Progress bars go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crowdtune import __version__
from crowdtune.tables import TABLE_FORMATS
from crowdtune.validation import check_choice

app = typer.Typer(
    help="crowdtune: align language models with feedback from a crowd.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(help="Simulate Crowd-SFT rounds (the model as a point in genre space).")
data_app = typer.Typer(help="The data home: where datasets live, and downloading them.")
shapley_app = typer.Typer(help="Shapley values: how much each contributor is worth.")
app.add_typer(simulate_app, name="simulate")
app.add_typer(shapley_app, name="shapley")
app.add_typer(data_app, name="data")

err = Console(stderr=True)


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


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"crowdtune {__version__}")
        raise typer.Exit()


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


def build_settings(
    *,
    dataset: str,
    users: int,
    groups: int,
    rounds: int,
    metric: str,
    scheme: str,
    delta: float,
    weight_power: float,
    error_prob: float,
    score_noise: float,
    explore_floor: float,
    explore_schedule: str,
    user_pool: str,
    missing: str,
    drop_genre: list[str],
    dims: int,
    strategy: str = "random",
    adversaries: float = 0.0,
    adversary_kind: str = "away",
) -> tuple[Any, Any]:
    """Validated ``CrowdSpec`` and ``RoundConfig``, or a clean exit naming the bad option."""
    from crowdtune.crowd.experiments import CrowdSpec
    from crowdtune.crowd.rounds import RoundConfig

    try:
        spec = CrowdSpec(
            dataset=dataset,
            n_users=users,
            user_pool=user_pool,
            missing=missing,
            drop_genres=tuple(drop_genre),
            n_dims=dims,
            adversaries=adversaries,
            adversary_kind=adversary_kind,
        )
        config = RoundConfig(
            n_groups=groups,
            n_rounds=rounds,
            strategy=strategy,
            metric=metric,
            scheme=scheme,
            delta=delta,
            weight_power=weight_power,
            error_prob=error_prob,
            score_noise=score_noise,
            explore_floor=explore_floor,
            explore_schedule=explore_schedule,
        )
        config.check_users(users)
    except ValueError as exc:
        fail(str(exc))
    return spec, config


def print_summary(summary: dict[str, Any], title: str) -> None:
    def ci(stats: dict[str, Any], digits: int = 2) -> str:
        if stats["mean"] is None:
            return "—"
        if stats["ci_low"] is None:
            return f"{stats['mean']:.{digits}f}"
        low, high = stats["ci_low"], stats["ci_high"]
        return f"{stats['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    table = Table(title=title)
    for column in (
        "strategy",
        "runs",
        "start distance",
        "final distance",
        "rounds to threshold",
        "reached",
    ):
        table.add_column(
            column,
            justify="left" if column == "strategy" else "right",
            no_wrap=column == "strategy",
        )
    for name, s in summary.items():
        reached = s["rounds_to_threshold"]["reached"]
        table.add_row(
            name,
            str(s["runs"]),
            ci(s["start_distance"]),
            ci(s["final_distance"]),
            ci(s["rounds_to_threshold"], 1),
            "—" if reached is None else f"{reached:.0%}",
        )
    Console().print(table)


def save_grouping(
    result: Any, out: Path, table_format: str, *, title: str, extra: list[Any] | None = None
) -> Path:
    """Tables, ``summary.json`` and ``report.html`` of a grouping experiment under ``out``;
    ``extra`` report sections go after the grouping ones."""
    from crowdtune.crowd.summary import distance_bands
    from crowdtune.reports import grouping_sections, render_report
    from crowdtune.tables import write_json, write_table

    for name in ("runs", "rounds", "points"):
        write_table(getattr(result, name), out / name, table_format)
    summary = result.summary()
    write_json({"settings": result.settings, "strategies": summary}, out / "summary.json")
    sections = grouping_sections(
        bands=distance_bands(result.rounds),
        runs=result.runs,
        points=result.points,
        traces=result.traces,
        summary={**summary, "settings": result.settings},
        threshold=result.settings["threshold"],
    )
    return render_report(out / "report.html", title=title, sections=sections + (extra or []))


@simulate_app.command("grouping")
def simulate_grouping_cmd(
    strategy: list[str] = typer.Option(
        ["random"],
        "--strategy",
        help="random, epsilon-greedy or interleaved; repeat to compare several.",
    ),
    dataset: str = DatasetOpt,
    users: int = UsersOpt,
    groups: int = GroupsOpt,
    rounds: int = RoundsOpt,
    runs: int = RunsOpt,
    metric: str = MetricOpt,
    scheme: str = SchemeOpt,
    delta: float = DeltaOpt,
    weight_power: float = PowerOpt,
    error_prob: float = ErrorOpt,
    score_noise: float = NoiseOpt,
    explore_floor: float = FloorOpt,
    explore_schedule: str = ScheduleOpt,
    user_pool: str = PoolOpt,
    missing: str = MissingOpt,
    drop_genre: list[str] = DropOpt,
    dims: int = DimsOpt,
    adversaries: float = AdversariesOpt,
    adversary_kind: str = AdversaryKindOpt,
    threshold: float = ThresholdOpt,
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
    out: Path | None = OutOpt,
    table_format: str = FormatOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Run seeded Crowd-SFT rounds for one or more grouping strategies and summarise them.

    With one --strategy, --json prints {"settings", "runs", "start_distance", "final_distance",
    "rounds_to_threshold", "improving_rounds"}, each distance as {"mean", "ci_low", "ci_high"}
    (L2 distance to the expert, 95% CI over runs); rounds_to_threshold averages the runs that
    reached --threshold and adds "reached", their share. With several, the per-strategy objects
    sit under "strategies".
    """
    from crowdtune.crowd.experiments import simulate_grouping
    from crowdtune.crowd.grouping import STRATEGIES
    from crowdtune.datasets import DatasetFormatError, DatasetMissingError

    strategy = list(dict.fromkeys(strategy))  # a repeated --strategy runs once
    spec, config = build_settings(
        dataset=dataset, users=users, groups=groups, rounds=rounds, metric=metric, scheme=scheme,
        delta=delta, weight_power=weight_power, error_prob=error_prob, score_noise=score_noise,
        explore_floor=explore_floor, explore_schedule=explore_schedule, user_pool=user_pool,
        missing=missing, drop_genre=drop_genre, dims=dims, strategy=strategy[0],
        adversaries=adversaries, adversary_kind=adversary_kind,
    )  # fmt: skip
    try:
        check_choice(table_format, TABLE_FORMATS, "table format")
        for name in strategy:
            check_choice(name, STRATEGIES, "strategy")
        if runs < 1:
            raise ValueError(f"runs must be at least 1, got {runs}")
    except ValueError as exc:
        fail(str(exc))
    try:
        with progress_bar(runs * len(strategy), "simulating runs", progress) as advance:
            result = simulate_grouping(
                spec, config, strategies=strategy, n_runs=runs, seed=seed, threshold=threshold,
                on_batch=advance,
            )  # fmt: skip
    except (DatasetMissingError, DatasetFormatError) as exc:
        fail(str(exc))
    summary = result.summary()
    if out is not None:
        report = save_grouping(result, out, table_format, title="Grouping simulation")
        err.print(f"wrote {out}/ (report: {report})")
    if as_json:
        from crowdtune.tables import jsonable

        body: dict[str, Any] = {"settings": result.settings}
        if len(strategy) == 1:
            body.update(summary[strategy[0]])
        else:
            body["strategies"] = summary
        typer.echo(json.dumps(jsonable(body)))
    else:
        print_summary(summary, f"{users} users, {groups} groups, {rounds} rounds, {metric}")


@simulate_app.command("sweep")
def simulate_sweep_cmd(
    users: str = typer.Option("10,25,50,75,100", "--users", help="Comma-separated crowd sizes."),
    groups: str = typer.Option("2,3,4,5", "--groups", help="Comma-separated group counts."),
    strategies: str = typer.Option(
        "random,epsilon-greedy,interleaved", "--strategies", help="Comma-separated strategies."
    ),
    metrics: str = typer.Option("l2,l1,dot", "--metrics", help="Comma-separated metrics."),
    schemes: str = typer.Option(
        "rank",
        "--schemes",
        help="Comma-separated point schemes: rank, marginal, regression, leave-one-out.",
    ),
    shapley: str | None = typer.Option(
        None,
        "--shapley",
        help="Also value each crowd (exact, permutation or kernel) and report how well every "
        "scheme's points track it, and the published KernelSHAP estimate.",
    ),
    shapley_runs: int = typer.Option(
        20, "--shapley-runs", help="Runs per cell whose crowds are valued (kernel: ~0.5-4 s each)."
    ),
    dataset: str = DatasetOpt,
    rounds: int = RoundsOpt,
    runs: int = RunsOpt,
    delta: float = DeltaOpt,
    weight_power: float = PowerOpt,
    error_prob: float = ErrorOpt,
    score_noise: float = NoiseOpt,
    explore_floor: float = FloorOpt,
    explore_schedule: str = ScheduleOpt,
    user_pool: str = PoolOpt,
    missing: str = MissingOpt,
    drop_genre: list[str] = DropOpt,
    dims: int = DimsOpt,
    threshold: float = ThresholdOpt,
    seed: int = SeedOpt,
    workers: int = typer.Option(2, "--workers", help="Worker processes (one per core)."),
    backend: str = BackendOpt,
    address: str | None = AddressOpt,
    adversaries: float = AdversariesOpt,
    adversary_kind: str = AdversaryKindOpt,
    as_json: bool = JsonOpt,
    out: Path | None = OutOpt,
    table_format: str = typer.Option("parquet", "--table-format", help="parquet or csv."),
    progress: bool = ProgressOpt,
) -> None:
    """Sweep crowd size x groups x strategy x metric (default: the published grid, 9,000 runs).

    --json prints {"settings", "cells": [...]}, one cell per setting with the mean start and final
    distance, rounds to threshold and their 95% CIs; with --shapley also "credit": per cell and
    reference estimate, the mean Spearman and Pearson correlation of points with Shapley values.
    """
    from crowdtune.crowd.sweep import SweepGrid, sweep
    from crowdtune.datasets import DatasetFormatError, DatasetMissingError

    def ints(text: str, name: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            fail(f"--{name} takes comma-separated integers, got {text!r}")
            raise

    try:
        grid = SweepGrid(
            users=ints(users, "users"),
            groups=ints(groups, "groups"),
            strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
            metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
            schemes=tuple(m.strip() for m in schemes.split(",") if m.strip()),
        )
        check_choice(table_format, TABLE_FORMATS, "table format")
    except ValueError as exc:
        fail(str(exc))
    spec, config = build_settings(
        dataset=dataset, users=max(grid.users), groups=min(grid.groups), rounds=rounds,
        metric=grid.metrics[0], scheme=grid.schemes[0], delta=delta, weight_power=weight_power,
        error_prob=error_prob, score_noise=score_noise, explore_floor=explore_floor,
        explore_schedule=explore_schedule, user_pool=user_pool, missing=missing,
        drop_genre=drop_genre, dims=dims, adversaries=adversaries, adversary_kind=adversary_kind,
    )  # fmt: skip
    runner = make_backend(backend, address, workers)
    try:
        with progress_bar(runs * len(grid.cells()), "sweeping runs", progress) as advance:
            result = sweep(
                spec, config, grid, n_runs=runs, seed=seed, threshold=threshold, backend=runner,
                shapley=shapley, shapley_runs=min(shapley_runs, runs), on_cell=advance,
            )  # fmt: skip
    except (DatasetMissingError, DatasetFormatError, ValueError, ImportError) as exc:
        fail(str(exc))
    body: dict[str, Any] = {"settings": result.settings, "cells": result.cells.to_dict("records")}
    if result.credit is not None:
        body["credit"] = result.credit.to_dict("records")
    if out is not None:
        from crowdtune.reports import render_report, sweep_sections
        from crowdtune.tables import write_json, write_table

        write_table(result.cells, out / "cells", "csv")
        if result.credit is not None:
            write_table(result.credit, out / "credit", "csv")
        for name in ("runs", "rounds", "points"):
            write_table(getattr(result, name), out / name, table_format)
        write_json(body, out / "summary.json")
        render_report(
            out / "report.html",
            title="Grouping sweep",
            sections=sweep_sections(result.cells, result.settings, result.credit),
        )
        err.print(f"wrote {out}/")
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable(body)))
    else:
        table = Table(title="Final L2 distance to the expert (mean [95% CI])")
        labels = ("users", "groups", "strategy", "metric", "scheme")
        for column in (*labels, "final distance", "reached"):
            table.add_column(column)
        for row in result.cells.to_dict("records"):
            final = (
                f"{row['final_distance_mean']:.2f} "
                f"[{row['final_distance_ci_low']:.2f}, {row['final_distance_ci_high']:.2f}]"
            )
            table.add_row(*(str(row[k]) for k in labels), final, f"{row['reached_threshold']:.0%}")
        Console().print(table)
        if result.credit is not None:
            credit = Table(title="Points vs Shapley values (mean over runs [95% CI])")
            for column in (*labels, "reference", "Spearman", "Pearson"):
                credit.add_column(column)
            for row in result.credit.to_dict("records"):
                cis = [
                    f"{row[k]:.3f} [{row[k + '_low']:.3f}, {row[k + '_high']:.3f}]"
                    for k in ("spearman", "pearson")
                ]
                credit.add_row(*(str(row[k]) for k in (*labels, "reference")), *cis)
            Console().print(credit)


@shapley_app.command("centroid")
def shapley_centroid_cmd(
    dataset: str = DatasetOpt,
    users: int = UsersOpt,
    metric: str = MetricOpt,
    method: str = typer.Option(
        "permutation",
        "--method",
        help="exact (n <= 20), permutation (crowdtune's estimator), truncated, or kernel "
        "(SHAP's KernelExplainer with the published settings, the comparison anchor).",
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the crowd (run 0) and of the sampler."),
    budget_evals: int | None = typer.Option(
        None, "--budget-evals", help="Game evaluations to spend (kernel: its nsamples)."
    ),
    seconds: float | None = typer.Option(None, "--seconds", help="Time budget in seconds."),
    rtol: float | None = typer.Option(
        None,
        "--rtol",
        help="Stop when the largest standard error is at most RTOL x the largest |value|. "
        "Without any budget: --rtol 0.01 or 60 s, whichever comes first.",
    ),
    user_pool: str = PoolOpt,
    missing: str = MissingOpt,
    drop_genre: list[str] = DropOpt,
    dims: int = DimsOpt,
    backend: str = BackendOpt,
    address: str | None = AddressOpt,
    workers: int = typer.Option(1, "--workers", help="Parallel sampling chunks (threads or Ray)."),
    as_json: bool = JsonOpt,
) -> None:
    """Shapley values of the Crowd-SFT centroid game of one crowd.

    The crowd is run 0 of `crowdtune simulate grouping` with the same --seed: N users and an
    expert; a coalition is worth metric(mean of its members' vectors, expert), the empty one
    metric(0, expert). --json prints {"values", "stderr", "n_evaluations", "seconds", "method"}.
    """
    from crowdtune.crowd.experiments import build_setups, load_crowd_matrix
    from crowdtune.datasets import DatasetFormatError, DatasetMissingError
    from crowdtune.valuation import CentroidGame
    from crowdtune.valuation.methods import estimate_shapley

    spec, _ = build_settings(
        dataset=dataset, users=users, groups=1, rounds=1, metric=metric, scheme="rank",
        delta=0.1, weight_power=2.0, error_prob=0.05, score_noise=0.0, explore_floor=0.4,
        explore_schedule="linear", user_pool=user_pool, missing=missing, drop_genre=drop_genre,
        dims=dims,
    )  # fmt: skip
    runner = make_backend(backend, address, workers, kind="thread")
    try:
        setups = build_setups(load_crowd_matrix(spec), spec, [0], seed)
        game = CentroidGame(setups.users[0], setups.expert[0], metric=metric)
        result = estimate_shapley(
            game, method, seed=seed, max_evaluations=budget_evals, seconds=seconds, rtol=rtol,
            backend=runner,
        )  # fmt: skip
    except (DatasetMissingError, DatasetFormatError, ValueError, ImportError) as exc:
        fail(str(exc))
    if as_json:
        from crowdtune.tables import jsonable

        body = {
            "values": result.values.tolist(),
            "stderr": result.stderr.tolist(),
            "n_evaluations": result.n_evaluations,
            "seconds": result.seconds,
            "method": result.method,
        }
        typer.echo(json.dumps(jsonable(body)))
        return
    table = Table(title=f"Shapley values of {users} {dataset} users ({metric})")
    for column in ("rank", "user", "value", "stderr"):
        table.add_column(column)
    order = result.values.argsort()[::-1]
    shown = list(order[:10]) + (list(order[-5:]) if len(order) > 15 else list(order[10:]))
    for rank, user in enumerate(shown):
        position = rank + 1 if rank < 10 else len(order) - len(shown) + rank + 1
        table.add_row(
            str(position), str(user), f"{result.values[user]:.5f}", f"{result.stderr[user]:.5f}"
        )
    Console().print(table)
    err.print(
        f"{result.method}\n{result.n_evaluations:,} game evaluations in {result.seconds:.2f} s; "
        f"values sum to {result.values.sum():.5f} = v(N) - v(∅)",
        highlight=False,
    )


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("reports/demo"), "--out", help="Where the report goes."),
    runs: int = typer.Option(500, "--runs", help="Seeded runs per strategy."),
    credit_runs: int = typer.Option(
        50, "--credit-runs", help="Seeded runs per point scheme in the credit comparison."
    ),
    seed: int = SeedOpt,
    progress: bool = ProgressOpt,
) -> None:
    """The main job on the shipped defaults: compare the three grouping strategies on MovieLens
    (published settings: 100 users, 4 groups, 100 rounds, L2, delta 0.1, p 2, error 0.05), then
    the point schemes against accurate Shapley values; print summaries and write an HTML report
    to OUT/index.html."""
    from crowdtune.crowd.credit import compare_credit
    from crowdtune.crowd.experiments import CrowdSpec, simulate_grouping
    from crowdtune.crowd.grouping import STRATEGIES
    from crowdtune.crowd.points import SCHEMES
    from crowdtune.crowd.rounds import RoundConfig
    from crowdtune.datasets import DatasetFormatError, DatasetMissingError
    from crowdtune.reports import credit_sections

    try:
        with progress_bar(runs * len(STRATEGIES), "grouping strategies", progress) as advance:
            result = simulate_grouping(
                CrowdSpec(), RoundConfig(), strategies=STRATEGIES, n_runs=runs, seed=seed,
                on_batch=advance,
            )  # fmt: skip
        err.print(f"credit: {len(SCHEMES)} point schemes x {credit_runs} runs, with Shapley values")
        credit = compare_credit(CrowdSpec(), RoundConfig(), SCHEMES, n_runs=credit_runs, seed=seed)
    except (DatasetMissingError, DatasetFormatError, ValueError) as exc:
        fail(str(exc))
    print_summary(result.summary(), "Crowd-SFT grouping on MovieLens (published settings)")
    table = Table(title="Points vs Shapley values, random grouping (mean over runs [95% CI])")
    for column in ("scheme", "Spearman", "Pearson"):
        table.add_column(column)
    for row in credit.summary.to_dict("records"):
        table.add_row(
            row["scheme"],
            *(
                f"{row[k]:.3f} [{row[k + '_low']:.3f}, {row[k + '_high']:.3f}]"
                for k in ("spearman", "pearson")
            ),
        )
    Console().print(table)
    save_grouping(result, out, "csv", title="crowdtune demo", extra=credit_sections(credit))
    index = (out / "report.html").replace(out / "index.html")
    err.print(f"report: {index}")


@data_app.command("home")
def data_home_cmd() -> None:
    """Print the data home ($CROWDTUNE_DATA, else ~/.cache/crowdtune)."""
    from crowdtune.datasets import data_home

    typer.echo(str(data_home()))


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
