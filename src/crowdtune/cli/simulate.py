"""``crowdtune simulate``: Crowd-SFT rounds with the model as a point in genre space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import (
    AddressOpt,
    AdversariesOpt,
    AdversaryKindOpt,
    BackendOpt,
    DatasetOpt,
    DeltaOpt,
    DimsOpt,
    DropOpt,
    ErrorOpt,
    FloorOpt,
    FormatOpt,
    GroupsOpt,
    JsonOpt,
    MetricOpt,
    MissingOpt,
    NoiseOpt,
    OutOpt,
    PoolOpt,
    PowerOpt,
    ProgressOpt,
    RoundsOpt,
    RunsOpt,
    ScheduleOpt,
    SchemeOpt,
    SeedOpt,
    ThresholdOpt,
    UsersOpt,
    err,
    fail,
    make_backend,
    progress_bar,
)
from crowdtune.tables import TABLE_FORMATS
from crowdtune.validation import check_choice

simulate_app = typer.Typer(
    help="Simulate Crowd-SFT rounds, the model a point in genre space.\n\n"
    "Users are MovieLens genre vectors (or synthetic ones); the expert is one more user."
)


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
    from crowdtune.crowd.simulation.experiments import CrowdSpec
    from crowdtune.crowd.simulation.rounds import RoundConfig

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
    from crowdtune.crowd.simulation.summary import distance_bands
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
    """Compare grouping strategies over seeded Crowd-SFT rounds.

    With one --strategy, `--json` prints `{"settings", "runs", "start_distance",
    "final_distance", "rounds_to_threshold", "improving_rounds"}`, each distance as
    `{"mean", "ci_low", "ci_high"}` (L2 distance to the expert, 95% CI over runs);
    `rounds_to_threshold` averages the runs that reached --threshold and adds `"reached"`, their
    share. With several, the per-strategy objects sit under `"strategies"`.
    """
    from crowdtune.crowd.grouping import STRATEGIES
    from crowdtune.crowd.simulation.experiments import simulate_grouping
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
    """Sweep crowd size x groups x strategy x metric.

    The default is the published grid, 9,000 runs. `--json` prints `{"settings", "cells": [...]}`,
    one cell per setting with the mean start and final distance, rounds to threshold and their 95%
    CIs; with --shapley also `"credit"`: per cell and reference estimate, the mean Spearman and
    Pearson correlation of points with Shapley values.
    """
    from crowdtune.crowd.simulation.sweep import SweepGrid, sweep
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
