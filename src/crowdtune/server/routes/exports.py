"""API route of exports: every answer of a project as a file (votes, revisions or ratings, in
the formats of the project's kind)."""

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
    ties: Annotated[Literal["drop", "keep"], Query(description="pairwise trl only")] = "drop",
    threshold: Annotated[
        float | None,
        Query(
            allow_inf_nan=False,
            description="rating kto only: a score above it is desirable (default: the middle "
            "of the scale).",
        ),
    ] = None,
) -> HTTPResponse:
    """Download every answer of the project in a format of its kind (422 naming the
    formats of the kind for another):

    - pairwise: ``arena-csv``, ``jsonl`` (one vote per line), ``trl`` (``prompt``,
      ``chosen``, ``rejected``; ties dropped unless ``ties=keep``);
    - revision: ``jsonl`` (one revision per line), ``sft`` (TRL's conversational rows,
      ``{"messages": [user prompt, assistant revision]}``, for ``SFTTrainer``), ``trl``
      (the revision ``chosen`` over the original ``rejected``, only where they differ, for
      the reward and DPO trainers);
    - rating: ``jsonl`` (one rating per line), ``csv``, ``kto`` (TRL's ``prompt``,
      ``completion``, ``label`` for ``KTOTrainer``; ``label`` true for a score above
      ``threshold``).

    A CSV is safe to open in a spreadsheet: a cell beginning with ``=``, ``+``, ``-``, ``@``,
    a tab or a carriage return gets a single quote in front (OWASP's rule against CSV
    injection); JSON Lines keep the exact text. The header ``X-Left-Out`` of ``trl`` counts
    the answers it leaves out: votes on items whose responses lack one turn per prompt turn
    (stored before imports checked it), revisions that kept the answer as it was."""
    return services.export_download(session, project_id, format, ties=ties, threshold=threshold)
