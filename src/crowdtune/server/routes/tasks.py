"""API routes of tasks and their responses: the next task of an annotator, and the vote that
answers it (idempotent per ``Idempotency-Key``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi import Response as HTTPResponse

from crowdtune.records import join_turns
from crowdtune.server import services
from crowdtune.server.deps import Annotator, SessionDep
from crowdtune.server.schemas import ResponseIn, ResponseOut, RowId, TaskItem, TaskOut
from crowdtune.store import repository as repo

router = APIRouter()


@router.get(
    "/projects/{project_id}/tasks/next",
    response_model=TaskOut,
    responses={204: {"description": "Nothing is left for you in this project."}},
    tags=["annotate"],
)
def next_task(project_id: RowId, session: SessionDep, me: Annotator) -> Any:
    """Your open task in the project, or a new one; 204 when nothing is left for you."""
    task = repo.next_task(session, project_id, me.id)
    if task is None:
        return HTTPResponse(status_code=204)
    item = task.item
    return TaskOut(
        task_id=task.id,
        item=TaskItem(
            prompt=join_turns(item.prompt),
            response_a=join_turns(item.response_a),
            response_b=join_turns(item.response_b or []),
        ),
    )


@router.post(
    "/tasks/{task_id}/responses",
    status_code=201,
    response_model=ResponseOut,
    responses={
        200: {"description": "A retry with a known Idempotency-Key and body; nothing stored."}
    },
    tags=["annotate"],
)
def submit(
    task_id: RowId,
    body: ResponseIn,
    session: SessionDep,
    me: Annotator,
    response: HTTPResponse,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> ResponseOut:
    """Answer one of your tasks (403 for someone else's). Stored and committed before the
    reply: 201. The same ``Idempotency-Key`` again with the same body returns the stored vote
    with 200 and stores nothing; with another body it is 422 (a new submission needs a new
    key); answering an answered task under another key is 409."""
    try:
        out, created = services.vote(
            session,
            task_id,
            me.id,
            verdict=body.verdict,
            reason=body.reason,
            seconds=body.seconds,
            idempotency_key=idempotency_key,
        )
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out
