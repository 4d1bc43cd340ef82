"""Parameter sweeps over crowd size, group count, strategy and metric, on processes or Ray.

The default grid is the published one: users {10, 25, 50, 75, 100} x groups {2, 3, 4, 5} x three
strategies x three metrics (l2, l1, dot), 50 runs of 100 rounds each: 9,000 runs. Each cell's runs
are simulated as one batch in a worker task; run ``i`` of every cell uses the same seeds (see
:mod:`crowdtune.crowd.experiments`), so the result depends neither on the backend nor on the
number of workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.crowd.experiments import CrowdSpec, cell_tables, load_crowd_matrix, run_cell
from crowdtune.crowd.grouping import STRATEGIES
from crowdtune.crowd.metrics import METRICS
from crowdtune.crowd.rounds import RoundConfig
from crowdtune.crowd.summary import summarize_runs
from crowdtune.parallel import Backend, LocalBackend
from crowdtune.validation import check_choice


@dataclass(frozen=True)
class SweepGrid:
    """The settings a sweep crosses; defaults are the published grid."""

    users: tuple[int, ...] = (10, 25, 50, 75, 100)
    groups: tuple[int, ...] = (2, 3, 4, 5)
    strategies: tuple[str, ...] = STRATEGIES
    metrics: tuple[str, ...] = ("l2", "l1", "dot")

    def __post_init__(self) -> None:
        for name, axis in dataclasses.asdict(self).items():
            if not axis:
                raise ValueError(f"the sweep grid needs at least one value of {name}")
        for strategy in self.strategies:
            check_choice(strategy, STRATEGIES, "strategy")
        for metric in self.metrics:
            check_choice(metric, METRICS, "metric")
        if min(self.users) < max(self.groups):
            raise ValueError(
                f"groups ({max(self.groups)}) cannot exceed users ({min(self.users)}) in any cell"
            )

    def cells(self) -> list[tuple[int, int, str, str]]:
        return list(product(self.users, self.groups, self.strategies, self.metrics))


@dataclass
class SweepResult:
    """Tidy tables of a sweep: ``cells`` has one row per setting with 95% CIs."""

    cells: pd.DataFrame
    runs: pd.DataFrame
    rounds: pd.DataFrame
    points: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)


Task = tuple[np.ndarray | None, CrowdSpec, RoundConfig, int, int, float]


def _run_task(task: Task) -> dict[str, np.ndarray]:
    matrix, spec, config, n_runs, seed, threshold = task
    arrays, _ = run_cell(matrix, spec, config, n_runs, seed, threshold=threshold)
    return arrays


def _cell_row(labels: dict[str, Any], runs: pd.DataFrame) -> dict[str, Any]:
    summary = summarize_runs(runs)
    row = dict(labels)
    for name in ("start_distance", "final_distance", "rounds_to_threshold"):
        for stat in ("mean", "ci_low", "ci_high"):
            row[f"{name}_{stat}"] = summary[name][stat]
    row["reached_threshold"] = summary["rounds_to_threshold"]["reached"]
    row["runs"] = summary["runs"]
    return row


def sweep(
    spec: CrowdSpec,
    config: RoundConfig,
    grid: SweepGrid | None = None,
    *,
    n_runs: int = 50,
    seed: int = 1,
    threshold: float = 5.0,
    workers: int = 2,
    backend: Backend | None = None,
    on_cell: Callable[[int], None] | None = None,
) -> SweepResult:
    """Run every cell of ``grid``; ``spec`` and ``config`` give the settings the grid leaves open.

    Cells run on ``backend`` (default: ``workers`` local processes; see
    :mod:`crowdtune.parallel`). ``on_cell(k)`` is called as each cell of ``k`` runs finishes (for
    progress bars).
    """
    grid = grid or SweepGrid()
    if n_runs < 1:
        raise ValueError(f"runs must be at least 1, got {n_runs}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cells = grid.cells()
    tasks: list[Task] = []
    matrix = load_crowd_matrix(dataclasses.replace(spec, n_users=max(grid.users)))
    for users, groups, strategy, metric in cells:
        cell_spec = dataclasses.replace(spec, n_users=users)
        cell_config = dataclasses.replace(config, n_groups=groups, strategy=strategy, metric=metric)
        cell_config.check_users(users)  # fail before any work starts
        tasks.append((matrix, cell_spec, cell_config, n_runs, seed, threshold))

    backend = backend or LocalBackend(workers=workers)
    results: list[dict[str, np.ndarray]] = []
    for arrays in backend.map(_run_task, [(task,) for task in tasks]):
        results.append(arrays)
        if on_cell:
            on_cell(n_runs)

    tables, rows = [], []
    for (users, groups, strategy, metric), arrays in zip(cells, results, strict=True):
        labels = {"users": users, "groups": groups, "strategy": strategy, "metric": metric}
        runs, rounds, points = cell_tables(arrays, labels)
        tables.append((runs, rounds, points))
        rows.append(_cell_row(labels, runs))
    runs, rounds, points = (pd.concat(t, ignore_index=True) for t in zip(*tables, strict=True))
    settings = {
        **dataclasses.asdict(spec),
        **dataclasses.asdict(config),
        **{f"grid_{k}": list(v) for k, v in dataclasses.asdict(grid).items()},
        "runs": n_runs,
        "seed": seed,
        "threshold": threshold,
        "backend": backend.name,
        "workers": backend.workers,
    }
    for key in ("n_users", "n_groups", "strategy", "metric"):
        settings.pop(key)
    return SweepResult(pd.DataFrame(rows), runs, rounds, points, settings)
