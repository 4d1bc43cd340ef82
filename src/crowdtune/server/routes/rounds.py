"""API routes of Crowd-SFT rounds, the jobs that run them, and the project's model lineage.

A round trains, so a request only queues it (202 with its job); the worker
(``crowdtune worker``, or ``crowdtune serve --worker``) runs it, and ``GET /jobs/{id}`` follows
it. Errors a round can know before it runs (the wrong kind of project or scheme, no gold items,
a round already queued) are answered at once (422, 409).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crowdtune.server import services
from crowdtune.server.deps import Admin, SessionDep
from crowdtune.server.schemas import JobOut, ModelOut, RoundIn, RoundOut, RoundQueued, RowId
from crowdtune.store import repository as repo

router = APIRouter()


@router.post(
    "/projects/{project_id}/rounds",
    status_code=202,
    response_model=RoundQueued,
    tags=["admin"],
)
def queue_round(
    project_id: RowId, body: RoundIn, session: SessionDep, admin: Admin
) -> dict[str, Any]:
    """Queue one Crowd-SFT round on the feedback collected so far, for the worker: contributors
    are grouped by ``strategy``; each group's revisions (``sft``) or votes (``dpo``,
    ``preference``) outside the gold items train a candidate; candidates are scored on the gold
    items; the winner becomes the base if it beats it; points are paid by ``scheme``. 202 with
    the job to follow; 422 when the round cannot run here (saying why); 409 while another round
    of the project is queued or running."""
    try:
        job, number, candidate = services.enqueue_round(session, project_id, body)
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return {"job_id": job.id, "round": number, "state": job.state, "candidate": candidate}


@router.get(
    "/projects/{project_id}/rounds",
    response_model=list[RoundOut],
    tags=["admin"],
)
def list_rounds(project_id: RowId, session: SessionDep, admin: Admin) -> list[dict[str, Any]]:
    """Every Crowd-SFT round of the project, oldest first: candidates with their group members
    and evaluation, the winner, whether the base changed, the points paid."""
    # Deferred: server.rounds loads the crowd package (scikit-learn, SciPy), kept off the start.
    from crowdtune.server.rounds import round_out

    return [round_out(stored) for stored in repo.project_rounds(session, project_id)]


@router.get("/projects/{project_id}/models", response_model=list[ModelOut], tags=["admin"])
def list_models(project_id: RowId, session: SessionDep, admin: Admin) -> list[dict[str, Any]]:
    """The project's model lineage, oldest first: its base model, then every candidate of
    every round (``is_base`` marks the one the next round starts from). Before the first round
    of language models, the base model alone."""
    return services.lineage(session, project_id)


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["admin"])
def get_job(job_id: RowId, session: SessionDep, admin: Admin) -> dict[str, Any]:
    """A job's state (queued, running, succeeded, failed, cancelled), progress (0-1), message
    and result."""
    return services.job_out(repo.get_job(session, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["admin"])
def cancel_job(job_id: RowId, session: SessionDep, admin: Admin) -> dict[str, Any]:
    """Cancel a job: a queued one at once; a running one stops at its next training step and
    stores nothing. A finished job is returned as it is."""
    return services.job_out(repo.request_cancel(session, job_id))
