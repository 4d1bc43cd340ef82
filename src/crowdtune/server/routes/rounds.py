"""API routes of Crowd-SFT rounds: run one on the feedback collected so far, list them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crowdtune.server import services
from crowdtune.server.deps import Admin, SessionDep
from crowdtune.server.schemas import RoundIn, RoundOut, RowId
from crowdtune.store import repository as repo

router = APIRouter()


@router.post(
    "/projects/{project_id}/rounds",
    status_code=201,
    response_model=RoundOut,
    tags=["admin"],
)
def run_round(
    project_id: RowId, body: RoundIn, session: SessionDep, admin: Admin
) -> dict[str, Any]:
    """Run one Crowd-SFT round on the feedback collected so far: contributors are grouped
    by ``strategy``, each group's votes outside the gold items train a candidate preference
    model, candidates are scored on the gold items (log loss), the winner is recorded and
    points are paid by ``scheme``. 422 when the round cannot run (no gold items, fewer
    contributors than ``n_groups``, no group with enough votes), saying why."""
    # Deferred: server.rounds runs the crowd package (scikit-learn, SciPy), kept off the start.
    from crowdtune.server.rounds import round_out

    try:
        stored = services.run_round(session, project_id, body)
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return round_out(stored)


@router.get(
    "/projects/{project_id}/rounds",
    response_model=list[RoundOut],
    tags=["admin"],
)
def list_rounds(project_id: RowId, session: SessionDep, admin: Admin) -> list[dict[str, Any]]:
    """Every Crowd-SFT round of the project, oldest first."""
    # Deferred: server.rounds runs the crowd package (scikit-learn, SciPy), kept off the start.
    from crowdtune.server.rounds import round_out

    return [round_out(stored) for stored in repo.project_rounds(session, project_id)]
