"""``crowdtune demo``: the main job on the shipped defaults."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import (
    ProgressOpt,
    SeedOpt,
    err,
    fail,
    progress_bar,
)
from crowdtune.cli.simulate import print_summary, save_grouping


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
