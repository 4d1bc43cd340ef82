"""The worker: runs jobs (Crowd-SFT rounds that train models) outside the web process.

:class:`~crowdtune.worker.loop.Worker` claims jobs from the store one at a time
(:mod:`crowdtune.store.repository.jobs`) and runs the handler of their kind
(:data:`HANDLERS`: ``round``, :func:`crowdtune.worker.rounds.run_round_job`).
:func:`default_models_dir` says where rounds write their models by default.
"""

from __future__ import annotations

import re
from pathlib import Path

from crowdtune.datasets.home import cache_home
from crowdtune.store import make_engine, normalize_url
from crowdtune.worker.loop import (
    Handler,
    JobCancelled,
    JobContext,
    JobLost,
    Worker,
    WorkerSettings,
)
from crowdtune.worker.rounds import run_round_job

#: The job kinds a worker runs, and their handlers.
HANDLERS: dict[str, Handler] = {"round": run_round_job}


def default_models_dir(url: str) -> Path:
    """Where a database's rounds write their models: beside a SQLite file
    (``crowdtune.db`` → ``crowdtune-models/``), else under the cache directory, one folder per
    database (``<cache>/projects/<host>-<port>-<database>/models``)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = Path(parsed.database).expanduser().resolve()
        return database.with_name(f"{database.stem}-models")
    label = f"{parsed.host or 'local'}-{parsed.port or ''}-{parsed.database or 'memory'}"
    return cache_home() / "projects" / re.sub(r"[^A-Za-z0-9_.-]+", "_", label) / "models"


def make_worker(
    url: str, *, models_dir: Path | None = None, name: str | None = None, **settings: float
) -> Worker:
    """A worker of the database at ``url`` running every kind of :data:`HANDLERS`
    (``settings``: :class:`WorkerSettings`' timing fields)."""
    engine = make_engine(url)
    folder = models_dir or default_models_dir(url)
    return Worker(engine, WorkerSettings(models_dir=folder, **settings), HANDLERS, name=name)


__all__ = [
    "HANDLERS",
    "Handler",
    "JobCancelled",
    "JobContext",
    "JobLost",
    "Worker",
    "WorkerSettings",
    "default_models_dir",
    "make_worker",
]
