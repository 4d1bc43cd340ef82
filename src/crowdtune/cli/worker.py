"""``crowdtune worker``: run the jobs of a database (Crowd-SFT rounds that train models)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import typer

from crowdtune.cli.db import DbOpt, upgrade_or_exit

ModelsDirOpt = typer.Option(
    None,
    "--models-dir",
    help="Folder for the models rounds train (candidates, winners, metrics.json with their "
    "provenance). Default: beside a SQLite file (crowdtune.db → crowdtune-models/), or the "
    "cache directory for PostgreSQL.",
)


def worker_cmd(
    db: str = DbOpt,
    models_dir: Path | None = ModelsDirOpt,
    poll: float = typer.Option(
        1.0, "--poll", min=0.05, help="Seconds between looks at an empty queue."
    ),
    heartbeat: float = typer.Option(
        5.0, "--heartbeat", min=0.05, help="Seconds between heartbeats of a running job."
    ),
    lapse: float = typer.Option(
        60.0,
        "--lapse",
        min=0.1,
        help="A running job whose heartbeat is older than this many seconds lost its worker: "
        "it is queued again while attempts are left (2 by default), else failed.",
    ),
    max_jobs: int | None = typer.Option(
        None, "--max-jobs", min=1, help="Exit after running this many jobs (default: run on)."
    ),
) -> None:
    """Run queued jobs (Crowd-SFT rounds) one at a time, outside the web server.

    Claims the oldest queued job of the database, runs it (training each group's candidate,
    scoring it, storing the round, its models and points in one transaction) and reports its
    progress as it trains; `GET /api/v1/jobs/{id}` shows it. On PostgreSQL several workers, on
    several machines, share one queue (jobs are claimed with FOR UPDATE SKIP LOCKED); on SQLite
    run one. A worker killed mid-job leaves no half-stored round: once the job's heartbeat is
    older than --lapse, the next worker to look queues it again or fails it. Stop with Ctrl+C.
    """
    from crowdtune.worker import make_worker

    upgrade_or_exit(db)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        worker = make_worker(
            db, models_dir=models_dir, poll_seconds=poll, heartbeat_seconds=heartbeat,
            lapse_seconds=lapse,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--heartbeat/--lapse") from None
    typer.echo(
        f"crowdtune worker {worker.name} on {db}; models in {worker.settings.models_dir}",
        err=True,
    )
    try:
        worker.run(max_jobs=max_jobs)
    except KeyboardInterrupt:
        typer.echo("worker stopped", err=True)


def start_worker_process(db: str, models_dir: Path | None) -> subprocess.Popen[bytes]:
    """``crowdtune worker`` on ``db`` in a process of its own (for ``serve --worker``): training
    then never holds the server's interpreter lock or threads."""
    command = [sys.executable, "-m", "crowdtune.cli", "worker", "--db", db]
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    return subprocess.Popen(command)
