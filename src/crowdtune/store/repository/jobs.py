"""The job queue: work that runs in a worker process, never in a web request.

A job is a row of ``job`` (:class:`~crowdtune.store.models.Job`). The server enqueues it
(:func:`enqueue_job`); a worker claims the oldest queued one (:func:`claim_job`), beats its
heartbeat while it works (:func:`beat`, which also reports progress and hears a cancellation),
and ends it (:func:`finish_job`). A job whose worker died stops beating; any worker's
:func:`requeue_lapsed` puts it back in the queue while attempts are left, else fails it.

Why a table and not a queue library: the libraries that need no extra service (a broker such
as Redis or RabbitMQ) are either SQLite-only (huey's SQLite storage, persist-queue) or
PostgreSQL-only (procrastinate, pgqueuer); none serves both backends of the store, and the job
state the API shows (progress, message, result) would live beside the queue anyway. The queue
is a few statements: PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` (several workers on
several machines take different jobs without waiting on each other); SQLite serialises the claim
in its one write transaction (one worker per database file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crowdtune.store.errors import NotFoundError
from crowdtune.store.models import JOB_FINAL_STATES, Job, utc_now
from crowdtune.store.repository.writes import MAX_LABEL, check_name, writing

#: What a worker hears when it beats a job's heartbeat.
BEAT_OK, BEAT_CANCEL, BEAT_LOST = "ok", "cancel", "lost"


def enqueue_job(
    session: Session,
    kind: str,
    payload: Mapping[str, Any],
    *,
    project_id: int | None = None,
    max_attempts: int = 2,
) -> Job:
    """Queue a job (``payload`` must be JSON-ready). Commits.

    ``max_attempts``: how many times a worker may start it; a job whose worker dies is started
    again until then (work that fails by itself, raising an error, is not retried).
    """
    kind = check_name(kind, "job kind", 32)
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    with writing(session):
        job = Job(
            kind=kind,
            project_id=project_id,
            payload=dict(payload),
            state="queued",
            progress=0.0,
            attempts=0,
            max_attempts=max_attempts,
        )
        session.add(job)
        session.commit()
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job with this id; :class:`NotFoundError` when there is none."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def project_jobs(
    session: Session, project_id: int, *, kind: str | None = None, active: bool = False
) -> list[Job]:
    """A project's jobs, newest first; ``active``: only queued or running ones."""
    query = select(Job).where(Job.project_id == project_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if active:
        query = query.where(Job.state.in_(("queued", "running")))
    return list(session.scalars(query.order_by(Job.id.desc())))


def claim_job(session: Session, worker: str, *, kinds: tuple[str, ...] | None = None) -> Job | None:
    """Take the oldest queued job for ``worker`` (state ``running``, one more attempt, a fresh
    heartbeat) and return it; None when the queue is empty. Commits.

    On PostgreSQL the row is locked ``FOR UPDATE SKIP LOCKED``: concurrent workers skip a job
    another is claiming instead of waiting for it. On SQLite the claim runs in the one write
    transaction (:func:`~crowdtune.store.repository.writes.writing`).
    """
    worker = check_name(worker, "worker name", MAX_LABEL)
    with writing(session):
        query = select(Job).where(Job.state == "queued")
        if kinds is not None:
            query = query.where(Job.kind.in_(kinds))
        job = session.scalar(query.order_by(Job.id).limit(1).with_for_update(skip_locked=True))
        if job is None:
            session.commit()
            return None
        now = utc_now()
        job.state = "running"
        job.worker = worker
        job.attempts += 1
        job.heartbeat_at = now
        job.started_at = now
        job.message = f"started by {worker} (attempt {job.attempts} of {job.max_attempts})"
        session.commit()
    return job


def _owned(job_id: int, worker: str) -> Any:
    return (Job.id == job_id) & (Job.worker == worker) & (Job.state == "running")


def beat(
    session: Session,
    job_id: int,
    worker: str,
    *,
    progress: float | None = None,
    message: str | None = None,
) -> str:
    """Renew ``worker``'s claim on a running job, with its progress (0-1) and message. Commits.

    Returns :data:`BEAT_OK`, :data:`BEAT_CANCEL` (cancelling was asked: stop at the next step)
    or :data:`BEAT_LOST` (the job is not this worker's any more: its heartbeat lapsed and it was
    requeued or failed; stop without recording anything).
    """
    values: dict[str, Any] = {"heartbeat_at": utc_now()}
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, float(progress)))
    if message is not None:
        values["message"] = message[:2000]
    with writing(session):
        done = session.execute(update(Job).where(_owned(job_id, worker)).values(**values))
        cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        session.commit()
    if done.rowcount == 0:  # type: ignore[attr-defined]
        return BEAT_LOST
    return BEAT_CANCEL if cancel else BEAT_OK


def finish_job(
    session: Session,
    job_id: int,
    worker: str,
    state: str,
    *,
    result: Mapping[str, Any] | None = None,
    message: str | None = None,
    commit: bool = True,
) -> bool:
    """End ``worker``'s running job as ``succeeded``, ``failed`` or ``cancelled``; False (and
    nothing written) when the job is no longer this worker's. ``commit=False`` leaves the
    change in the caller's write transaction, so that what the job produced and its end are
    stored together or not at all."""
    if state not in JOB_FINAL_STATES:
        raise ValueError(f"a job ends {', '.join(JOB_FINAL_STATES)}; got {state!r}")
    values: dict[str, Any] = {"state": state, "finished_at": utc_now(), "heartbeat_at": utc_now()}
    if state == "succeeded":
        values["progress"] = 1.0
    if result is not None:
        values["result"] = dict(result)
    if message is not None:
        values["message"] = message[:2000]

    def end() -> bool:
        done = session.execute(update(Job).where(_owned(job_id, worker)).values(**values))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    if not commit:
        return end()
    with writing(session):
        ended = end()
        session.commit()
    return ended


def request_cancel(session: Session, job_id: int) -> Job:
    """Cancel a job: a queued one at once, a running one at its worker's next heartbeat (it
    stops at the next training step and records nothing). A finished job is left as it is.
    Commits and returns the job."""
    with writing(session):
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFoundError(f"no job with id {job_id}")
        if job.state == "queued":
            job.state = "cancelled"
            job.finished_at = utc_now()
            job.message = "cancelled before a worker started it"
        elif job.state == "running":
            job.cancel_requested = True
            job.message = "cancelling: the worker stops at its next step"
        session.commit()
    return job


@dataclass(frozen=True)
class Lapsed:
    """A running job whose heartbeat lapsed, and what became of it (``queued`` or ``failed``)."""

    job_id: int
    state: str


def requeue_lapsed(session: Session, lapse: timedelta) -> list[Lapsed]:
    """Running jobs whose heartbeat is older than ``lapse`` (their worker was killed or lost the
    database) go back to the queue while attempts are left, else fail; a job that was being
    cancelled is cancelled. Whatever such a worker wrote on disk is left for the next attempt to
    ignore: a job's results reach the database in one transaction with its end. Commits."""
    cutoff = utc_now() - lapse
    changed: list[Lapsed] = []
    with writing(session):
        query = (
            select(Job)
            .where(Job.state == "running", Job.heartbeat_at < cutoff)
            .order_by(Job.id)
            .with_for_update(skip_locked=True)
        )
        for job in session.scalars(query):
            lost = f"its worker {job.worker} stopped beating (last heartbeat {job.heartbeat_at})"
            if job.cancel_requested:
                job.state, job.message = "cancelled", f"cancelled; {lost}"
            elif job.attempts < job.max_attempts:
                job.state = "queued"
                job.message = f"retrying: {lost}; attempt {job.attempts} of {job.max_attempts}"
            else:
                job.state = "failed"
                job.message = f"failed: {lost}, after {job.attempts} attempt(s)"
            if job.state != "queued":
                job.finished_at = utc_now()
            job.worker = None
            job.progress = 0.0
            changed.append(Lapsed(job.id, job.state))
        session.commit()
    return changed
