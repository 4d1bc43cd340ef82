"""``crowdtune worker``: run the jobs of a database (Crowd-SFT rounds that train models)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
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
    parent: int | None = typer.Option(
        None,
        "--exit-with-parent",
        hidden=True,
        help="Exit as soon as the process with this id is gone (serve --worker passes its own: "
        "the worker must not outlive the server, however the server ends).",
    ),
) -> None:
    """Run queued Crowd-SFT rounds (jobs) outside the web server.

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
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        worker.run(max_jobs=max_jobs)
    except KeyboardInterrupt:
        typer.echo("worker stopped", err=True)


def _exit_with(parent: int) -> None:
    """End this process once ``parent`` has gone. uvicorn re-raises the SIGTERM it handled once
    it has shut down, so the server may end without running its own clean-up; watching the
    parent also covers a server that is killed. A job running at that moment is left to the
    heartbeat's lapse, like any killed worker's: queued again for the next worker."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def start_worker_process(db: str, models_dir: Path | None) -> subprocess.Popen[bytes]:
    """``crowdtune worker`` on ``db`` in a process of its own (for ``serve --worker``): training
    then never holds the server's interpreter lock or threads."""
    command = [sys.executable, "-m", "crowdtune.cli", "worker", "--db", db,
               "--exit-with-parent", str(os.getpid())]  # fmt: skip
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    return subprocess.Popen(command)
