"""The model leaderboard page of a project (admin area): the crowd's votes ranking the models
that wrote its items (:func:`crowdtune.server.model_board.model_leaderboard`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from crowdtune.server.deps import SessionDep
from crowdtune.server.model_board import model_leaderboard
from crowdtune.server.pages.web import csrf_token, page_project, render, require, signed_in

router = APIRouter(include_in_schema=False)


@router.get("/projects/{project_id}/admin/models", response_class=HTMLResponse)
def models_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    require(me, "admin")
    project = page_project(session, project_id)
    board = model_leaderboard(session, project_id)
    return render(
        request, "models.html", me=me, csrf=csrf_token(token), project=project, board=board
    )
