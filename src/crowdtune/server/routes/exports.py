"""API route of exports: every vote of a project as an arena CSV, crowdtune JSONL or TRL
preference JSONL."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi import Response as HTTPResponse

from crowdtune.server import services
from crowdtune.server.deps import Admin, SessionDep
from crowdtune.server.schemas import RowId

router = APIRouter()


@router.get(
    "/projects/{project_id}/export",
    response_class=HTTPResponse,
    responses={200: {"content": {m: {} for _, m in services.EXPORTS.values()}}},
    tags=["admin"],
)
def export(
    project_id: RowId,
    session: SessionDep,
    admin: Admin,
    format: Annotated[services.ExportFormat, Query()] = "jsonl",
    ties: Annotated[Literal["drop", "keep"], Query(description="trl only")] = "drop",
) -> HTTPResponse:
    """Download every vote: an arena CSV, crowdtune JSONL (one line per vote), or TRL
    preference JSONL (ties dropped unless ``ties=keep``).

    The arena CSV is safe to open in a spreadsheet: a cell beginning with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return gets a single quote in front (OWASP's rule against CSV
    injection). JSONL and TRL keep the exact text. TRL leaves out votes on items whose
    responses lack one turn per prompt turn (stored before imports checked it); the header
    ``X-Left-Out`` counts them."""
    return services.export_download(session, project_id, format, ties=ties)
