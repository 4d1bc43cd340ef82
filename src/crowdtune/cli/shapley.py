"""``crowdtune shapley``: Shapley values of contributors."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import (
    AddressOpt,
    BackendOpt,
    DatasetOpt,
    DimsOpt,
    DropOpt,
    JsonOpt,
    MetricOpt,
    MissingOpt,
    PoolOpt,
    UsersOpt,
    err,
    fail,
    make_backend,
)
from crowdtune.cli.simulate import build_settings

shapley_app = typer.Typer(help="Shapley values: how much each contributor is worth.")


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
    metric(0, expert). `--json` prints `{"values", "stderr", "n_evaluations", "seconds",
    "method"}`.
    """
    from crowdtune.crowd.simulation.experiments import build_setups, load_crowd_matrix
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
