"""API route of a project's model leaderboard: the crowd's votes rank the models of its items."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crowdtune.server.deps import Admin, SessionDep
from crowdtune.server.model_board import model_leaderboard
from crowdtune.server.schemas import ModelLeaderboardOut, RowId

router = APIRouter()


@router.get(
    "/projects/{project_id}/models/leaderboard",
    response_model=ModelLeaderboardOut,
    tags=["admin"],
)
def models_leaderboard(project_id: RowId, session: SessionDep, admin: Admin) -> dict[str, Any]:
    """The models that answered a pairwise project's items (``model_a`` / ``model_b``), ranked
    by the project's votes: Bradley–Terry ratings (ties half a win) with 95% bootstrap
    intervals, best first, each with its round and whether it is the base. Votes on items
    without two model names are counted apart; ``note`` says why the list is empty. For admins,
    as the lineage (``GET .../models``) is."""
    return model_leaderboard(session, project_id)
