"""Parameter sweeps over crowd size, group count, strategy and metric, on processes or Ray.

The default grid is the published one: users {10, 25, 50, 75, 100} x groups {2, 3, 4, 5} x three
strategies x three metrics (l2, l1, dot), 50 runs of 100 rounds each: 9,000 runs. Each cell's runs
are simulated as one batch in a worker task; run ``i`` of every cell uses the same seeds (see
:mod:`crowdtune.crowd.simulation.experiments`), so the result depends neither on the backend nor
on the number of workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.crowd.grouping import STRATEGIES
from crowdtune.crowd.points import SCHEMES
from crowdtune.crowd.simulation.credit import (
    SHAPLEY_METHODS,
    centroid_shapley,
    shapley_agreement,
    summarize_agreement,
)
from crowdtune.crowd.simulation.experiments import (
    CrowdSpec,
    build_setups,
    cell_tables,
    load_crowd_matrix,
    run_cell,
)
from crowdtune.crowd.simulation.rounds import RoundConfig
from crowdtune.crowd.simulation.summary import summarize_runs
from crowdtune.parallel import Backend, LocalBackend
from crowdtune.spaces.metrics import METRICS
from crowdtune.validation import check_choice
from crowdtune.valuation.estimators import MAX_EXACT_PLAYERS


@dataclass(frozen=True)
class SweepGrid:
    """The settings a sweep crosses; defaults are the published grid."""

    users: tuple[int, ...] = (10, 25, 50, 75, 100)
    groups: tuple[int, ...] = (2, 3, 4, 5)
    strategies: tuple[str, ...] = STRATEGIES
    metrics: tuple[str, ...] = ("l2", "l1", "dot")
    schemes: tuple[str, ...] = ("rank",)

    def __post_init__(self) -> None:
        for name, axis in dataclasses.asdict(self).items():
            if not axis:
                raise ValueError(f"the sweep grid needs at least one value of {name}")
        for strategy in self.strategies:
            check_choice(strategy, STRATEGIES, "strategy")
        for metric in self.metrics:
            check_choice(metric, METRICS, "metric")
        for scheme in self.schemes:
            check_choice(scheme, SCHEMES, "point scheme")
        if min(self.users) < max(self.groups):
            raise ValueError(
                f"groups ({max(self.groups)}) cannot exceed users ({min(self.users)}) in any cell"
            )

    def cells(self) -> list[tuple[int, int, str, str, str]]:
        """Every (users, groups, strategy, metric, scheme) setting."""
        return list(product(self.users, self.groups, self.strategies, self.metrics, self.schemes))


@dataclass
class SweepResult:
    """Tidy tables of a sweep: ``cells`` has one row per setting with 95% CIs.

    ``credit`` (when Shapley values were asked for) has one row per setting and reference
    estimate: the mean correlation of the setting's final points with the Shapley values of its
    first runs, Spearman and Pearson with 95% CIs (Fisher z across runs).
    """

    cells: pd.DataFrame
    runs: pd.DataFrame
    rounds: pd.DataFrame
    points: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    credit: pd.DataFrame | None = None


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
    shapley: str | None = None,
    shapley_runs: int = 20,
    shapley_permutations: int = 2000,
    on_cell: Callable[[int], None] | None = None,
) -> SweepResult:
    """Run every cell of ``grid``; ``spec`` and ``config`` give the settings the grid leaves open.

    Cells run on ``backend`` (default: ``workers`` local processes; see
    :mod:`crowdtune.parallel`). ``on_cell(k)`` is called as each cell of ``k`` runs finishes (for
    progress bars).

    With ``shapley`` (``exact``, ``permutation`` or ``kernel``) the first ``shapley_runs`` runs
    of every crowd size and metric also get Shapley values of their centroid game by that
    method and, unless it is ``kernel`` already, by the published KernelSHAP estimate; the
    ``credit`` table then says how well each point scheme tracks each.
    """
    grid = grid or SweepGrid()
    if n_runs < 1:
        raise ValueError(f"runs must be at least 1, got {n_runs}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    references: list[str] = []
    if shapley is not None:
        check_choice(shapley, SHAPLEY_METHODS, "Shapley method")
        if shapley == "exact" and max(grid.users) > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"--shapley exact enumerates 2^users coalitions and allows users <= "
                f"{MAX_EXACT_PLAYERS}; the grid has {max(grid.users)}: use --shapley permutation"
            )
        if not 1 <= shapley_runs <= n_runs:
            raise ValueError(f"shapley_runs must be in [1, runs={n_runs}]; got {shapley_runs}")
        references = [shapley] if shapley == "kernel" else [shapley, "kernel"]
    cells = grid.cells()
    tasks: list[Task] = []
    matrix = load_crowd_matrix(dataclasses.replace(spec, n_users=max(grid.users)))
    for users, groups, strategy, metric, scheme in cells:
        cell_spec = dataclasses.replace(spec, n_users=users)
        cell_config = dataclasses.replace(
            config, n_groups=groups, strategy=strategy, metric=metric, scheme=scheme
        )
        cell_config.check_users(users)  # fail before any work starts
        tasks.append((matrix, cell_spec, cell_config, n_runs, seed, threshold))

    backend = backend or LocalBackend(workers=workers)
    results: list[dict[str, np.ndarray]] = []
    for arrays in backend.map(_run_task, [(task,) for task in tasks]):
        results.append(arrays)
        if on_cell:
            on_cell(n_runs)

    tables, rows = [], []
    for (users, groups, strategy, metric, scheme), arrays in zip(cells, results, strict=True):
        labels = {
            "users": users,
            "groups": groups,
            "strategy": strategy,
            "metric": metric,
            "scheme": scheme,
        }
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
    for key in ("n_users", "n_groups", "strategy", "metric", "scheme"):
        settings.pop(key)
    credit: pd.DataFrame | None = None
    if references:
        settings.update(
            shapley=shapley, shapley_runs=shapley_runs, shapley_permutations=shapley_permutations
        )
        values = _shapley_values(
            matrix, spec, grid, references, shapley_runs, seed, shapley_permutations, backend
        )
        per_run = []
        for cell, arrays in zip(cells, results, strict=True):
            users, groups, strategy, metric, scheme = cell
            for reference in references:
                frame = shapley_agreement(
                    {scheme: arrays["points"][:shapley_runs]}, values[users, metric, reference]
                )
                frame = frame.assign(
                    users=users, groups=groups, strategy=strategy, metric=metric,
                    reference=reference,
                )  # fmt: skip
                per_run.append(frame)
        table = pd.concat(per_run, ignore_index=True)
        parts = [
            summarize_agreement(table[table["users"] == n].drop(columns="users"), n).assign(users=n)
            for n in grid.users
        ]
        order = ["users", "groups", "strategy", "metric", "scheme", "reference"]
        credit = pd.concat(parts, ignore_index=True)
        credit = credit[order + [c for c in credit.columns if c not in order]]
    return SweepResult(pd.DataFrame(rows), runs, rounds, points, settings, credit)


def _shapley_task(
    matrix: np.ndarray | None,
    spec: CrowdSpec,
    metric: str,
    method: str,
    n_runs: int,
    seed: int,
    n_permutations: int,
) -> np.ndarray:
    setups = build_setups(matrix, spec, range(n_runs), seed)
    values, _ = centroid_shapley(
        setups.users, setups.expert, metric=metric, method=method, n_permutations=n_permutations,
        seed=seed,
    )  # fmt: skip
    return values


def _shapley_values(
    matrix: np.ndarray | None,
    spec: CrowdSpec,
    grid: SweepGrid,
    references: list[str],
    n_runs: int,
    seed: int,
    n_permutations: int,
    backend: Backend,
) -> dict[tuple[int, str, str], np.ndarray]:
    """Shapley values (n_runs, users) of the first runs' crowds, by (users, metric, method).

    A run's crowd depends only on the crowd size and the seed, not on groups, strategy or scheme,
    so every cell of one size and metric shares them.
    """
    keys = list(product(grid.users, grid.metrics, references))
    tasks = [
        (matrix, dataclasses.replace(spec, n_users=users), metric, method, n_runs, seed,
         n_permutations)
        for users, metric, method in keys
    ]  # fmt: skip
    return dict(zip(keys, backend.map(_shapley_task, tasks), strict=True))
