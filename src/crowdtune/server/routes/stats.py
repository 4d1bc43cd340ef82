"""API routes of a project's stats (progress and agreement) and its leaderboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from crowdtune.server import services
from crowdtune.server.deps import Admin, SessionDep, SignedIn
from crowdtune.server.schemas import LeaderboardOut, RowId, StatsOut

router = APIRouter()


@router.get("/projects/{project_id}/stats", response_model=StatsOut, tags=["admin"])
def stats(project_id: RowId, request: Request, session: SessionDep, admin: Admin) -> StatsOut:
    """Progress counts, and inter-annotator agreement once two annotators share an item
    (otherwise ``agreement`` is null and ``agreement_reason`` says why); for revision and
    rating projects their quality signals (``signals``)."""
    return services.project_stats(
        session,
        project_id,
        scorer=request.app.state.quality_scorer,
        reliability_cache=request.app.state.reliability_cache,
    )


@router.get(
    "/projects/{project_id}/leaderboard",
    response_model=LeaderboardOut,
    tags=["annotate"],
)
def leaderboard(
    project_id: RowId, request: Request, session: SessionDep, me: SignedIn
) -> dict[str, Any]:
    """Per contributor: votes, gold items answered and accuracy on them, agreement with
    the majority of the other voters on shared items, and credit: points summed over the
    project's Crowd-SFT rounds (null before any; ``credit_note`` says how they were earned).

    Admins see gold and agreement over every vote. Annotators see them over closed items only
    (all k votes in), and only once a contributor has a handful (null before;
    ``quality_note`` says so): a vote never tells whether its item is gold or what the others
    voted."""
    return services.leaderboard(
        session,
        project_id,
        admin_view=me.role == "admin",
        scorer=request.app.state.quality_scorer,
    )
