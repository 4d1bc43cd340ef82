"""The worker: claims jobs from the store one at a time and runs them outside the web process.

``crowdtune worker --db URL`` runs :meth:`Worker.run`; ``crowdtune serve --worker`` starts one
in a process of its own beside the server, so that training never holds the server's event
loop, threads or interpreter lock. A job runs in the worker's main thread while a heartbeat
thread renews its claim every ``heartbeat_seconds`` with the latest progress and message, and
hears a cancellation: the job's next progress report (every training step) then raises
:class:`JobCancelled`, and nothing of it is stored. A worker that dies stops beating; after
``lapse_seconds`` the next worker to poll puts the job back in the queue (or fails it once its
attempts are spent, see :func:`crowdtune.store.repository.requeue_lapsed`). What a job stores,
it stores in one transaction with its end, so a killed worker never leaves half a round.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crowdtune.store import repository as repo
from crowdtune.store import session_factory
from crowdtune.store.models import Job

log = logging.getLogger("crowdtune.worker")


class JobCancelled(Exception):
    """An admin cancelled the job; it stops at its next progress report and stores nothing."""


class JobLost(Exception):
    """The job is no longer this worker's (its heartbeat lapsed and another took it over)."""


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker polls and beats.

    Parameters
    ----------
    models_dir
        Where rounds write their candidates (``<models_dir>/project-<id>/...``).
    poll_seconds
        Wait between looks at an empty queue.
    heartbeat_seconds
        How often a running job's claim is renewed (and a cancellation heard).
    lapse_seconds
        A running job whose heartbeat is older than this is taken to have lost its worker and
        goes back to the queue (or fails). Many heartbeats long, so that a busy machine does not
        lose a healthy job.
    """

    models_dir: Path
    poll_seconds: float = 1.0
    heartbeat_seconds: float = 5.0
    lapse_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_seconds < self.lapse_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be positive and shorter "
                f"than lapse_seconds ({self.lapse_seconds})"
            )
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {self.poll_seconds}")


@dataclass
class JobContext:
    """What a running job's handler gets: the job's fields, where to write, and
    :meth:`report` to call as it goes (every training step)."""

    job_id: int
    kind: str
    project_id: int | None
    payload: Mapping[str, Any]
    attempt: int
    worker: str
    models_dir: Path
    sessions: sessionmaker[Session]
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    _state: tuple[float, str] = (0.0, "started")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, fraction: float, message: str) -> None:
        """Record progress (0-1) for the next heartbeat; raise :class:`JobCancelled` or
        :class:`JobLost` when the job must stop."""
        with self._lock:
            self._state = (min(1.0, max(0.0, float(fraction))), message)
        self.check()

    def check(self) -> None:
        """Raise when the job must stop: cancelled by an admin, or taken over."""
        if self.lost.is_set():
            raise JobLost(f"job {self.job_id} was taken over: its heartbeat lapsed")
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    @property
    def state(self) -> tuple[float, str]:
        with self._lock:
            return self._state


#: A job kind's handler: runs the job (storing what it produced together with the job's end,
#: :func:`crowdtune.store.repository.record_job_round`), or raises.
Handler = Callable[[JobContext], None]


class Worker:
    """Claims and runs jobs of the kinds in ``handlers`` from the database of ``engine``."""

    def __init__(
        self,
        engine: Engine,
        settings: WorkerSettings,
        handlers: Mapping[str, Handler],
        *,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.handlers = dict(handlers)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.sessions = session_factory(engine)

    def run(self, stop: threading.Event | None = None, max_jobs: int | None = None) -> int:
        """Run jobs until ``stop`` is set (or ``max_jobs`` ran); returns how many ran."""
        stop = stop or threading.Event()
        ran = 0
        log.info("worker %s polling for jobs", self.name)
        while not stop.is_set() and (max_jobs is None or ran < max_jobs):
            if self.run_once() is None:
                stop.wait(self.settings.poll_seconds)
            else:
                ran += 1
        return ran

    def run_once(self) -> int | None:
        """Requeue lapsed jobs, then claim and run the oldest queued one; its id, or None
        when the queue was empty."""
        with self.sessions() as session:
            for lapsed in repo.requeue_lapsed(
                session, timedelta(seconds=self.settings.lapse_seconds)
            ):
                log.warning("job %d lost its worker: now %s", lapsed.job_id, lapsed.state)
            job = repo.claim_job(session, self.name, kinds=tuple(self.handlers))
            if job is None:
                return None
            context = self._context(job)
        self._run(context)
        return context.job_id

    def _context(self, job: Job) -> JobContext:
        return JobContext(
            job_id=job.id,
            kind=job.kind,
            project_id=job.project_id,
            payload=dict(job.payload),
            attempt=job.attempts,
            worker=self.name,
            models_dir=self.settings.models_dir,
            sessions=self.sessions,
        )

    def _run(self, context: JobContext) -> None:
        done = threading.Event()
        beater = threading.Thread(
            target=self._beat, args=(context, done), name=f"heartbeat-{context.job_id}"
        )
        beater.start()
        started = time.perf_counter()
        try:
            self.handlers[context.kind](context)
        except JobCancelled:
            self._end(context, "cancelled", "cancelled by an admin; nothing was stored")
        except JobLost:
            log.warning("job %d: taken over after its heartbeat lapsed", context.job_id)
        except Exception as exc:  # the job's failure, reported on the job; the worker goes on
            log.exception("job %d failed", context.job_id)
            self._end(context, "failed", f"failed: {type(exc).__name__}: {exc}")
        else:
            log.info("job %d done in %.1f s", context.job_id, time.perf_counter() - started)
        finally:
            done.set()
            beater.join()

    def _end(self, context: JobContext, state: str, message: str) -> None:
        with self.sessions() as session:
            repo.finish_job(session, context.job_id, self.name, state, message=message)

    def _beat(self, context: JobContext, done: threading.Event) -> None:
        with self.sessions() as session:
            while not done.wait(self.settings.heartbeat_seconds):
                progress, message = context.state
                try:
                    heard = repo.beat(
                        session, context.job_id, self.name, progress=progress, message=message
                    )
                except Exception:  # a missed beat is retried; the lapse allows for many
                    log.exception("job %d: heartbeat failed", context.job_id)
                    continue
                if heard == repo.BEAT_CANCEL:
                    context.cancelled.set()
                elif heard == repo.BEAT_LOST:
                    context.lost.set()
