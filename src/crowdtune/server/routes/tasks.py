"""API routes of tasks and their responses: the next task of an annotator, and the answer that
closes it (a vote, a revision, a score, or a skip; idempotent per ``Idempotency-Key``).

Both are the server's hot path: ``async`` routes that queue their write to the app's group
commit writer (:class:`crowdtune.store.group_commit.GroupCommit`) and answer once the batch
holding it has committed. The caller comes from the token cache (:mod:`crowdtune.server.deps`);
nothing here waits on the database on the event loop."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi import Response as HTTPResponse
from sqlalchemy import Connection

from crowdtune.records import join_turns
from crowdtune.server import services
from crowdtune.server.deps import Annotator
from crowdtune.server.schemas import (
    AnyTaskOut,
    RatingTaskOut,
    ResponseIn,
    ResponseOut,
    RevisionTaskOut,
    RowId,
    Scale,
    SingleTaskItem,
    TaskItem,
    TaskOut,
)
from crowdtune.store import repository as repo
from crowdtune.store.group_commit import GroupCommit

router = APIRouter()


def task_out(task: repo.AssignedTask) -> TaskOut | RevisionTaskOut | RatingTaskOut:
    """What an annotator is shown of a task, by its project's kind: the prompt's turns joined,
    the answer(s); never the gold answer or others' answers."""
    if task.kind == "pairwise":
        return TaskOut(
            task_id=task.id,
            item=TaskItem(
                prompt=join_turns(task.prompt),
                response_a=join_turns(task.response_a),
                response_b=join_turns(task.response_b or []),
            ),
        )
    single = SingleTaskItem(prompt=join_turns(task.prompt), response=join_turns(task.response_a))
    if task.kind == "revision":
        return RevisionTaskOut(task_id=task.id, item=single, editor_prefill=task.editor_prefill)
    low, high = task.scale or (1, 7)
    return RatingTaskOut(task_id=task.id, item=single, scale=Scale(min=low, max=high))


def writer(request: Request) -> GroupCommit:
    """The app's group commit writer (made when the app starts)."""
    writer: GroupCommit = request.app.state.writer
    return writer


@router.get(
    "/projects/{project_id}/tasks/next",
    response_model=AnyTaskOut,
    responses={204: {"description": "Nothing is left for you in this project."}},
    tags=["annotate"],
)
async def next_task(project_id: RowId, request: Request, me: Annotator) -> Any:
    """Your open task in the project, or a new one; 204 when nothing is left for you.

    ``kind`` says what to do: ``pairwise``, compare ``item.response_a`` with
    ``item.response_b``; ``revision``, rewrite ``item.response`` (``editor_prefill`` says
    whether an editor should start with it); ``rating``, score ``item.response`` on ``scale``.
    """

    def assign(connection: Connection) -> repo.AssignedTask | None:
        return repo.assign(connection, project_id, me.id)

    task = await writer(request).run(assign)
    if task is None:
        return HTTPResponse(status_code=204)
    return task_out(task)


@router.post(
    "/tasks/{task_id}/responses",
    status_code=201,
    response_model=ResponseOut,
    responses={
        200: {"description": "A retry with a known Idempotency-Key and body; nothing stored."}
    },
    tags=["annotate"],
)
async def submit(
    task_id: RowId,
    body: ResponseIn,
    request: Request,
    me: Annotator,
    response: HTTPResponse,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> ResponseOut:
    """Answer one of your tasks (403 for someone else's) with what its project's kind takes:
    ``{"verdict": "a" | "b" | "tie"}`` (pairwise), ``{"revision": "..."}`` (revision: the
    rewritten answer, at most 20,000 characters) or ``{"score": n}`` (rating: a whole number
    on the project's scale, optionally with ``aspects``); or, for any kind,
    ``{"skip": true, "reason": "..."}``, which closes the task without an answer and gives the
    item back to the pool. ``reason`` and ``seconds`` are optional otherwise. 422 names the
    field of a bad answer: an empty or too long revision, a score off the scale, an answer of
    another kind.

    Stored and committed before the reply: 201. The same ``Idempotency-Key`` again with the
    same body returns the stored answer with 200 and stores nothing; with another body it is
    422 (a new submission needs a new key); answering an answered task under another key is
    409."""
    try:
        sent = repo.submission(
            verdict=body.verdict,
            revision=body.revision,
            score=body.score,
            aspects=body.aspects,
            skipped=body.skip,
            reason=body.reason,
            seconds=body.seconds,
            idempotency_key=idempotency_key,
        )

        def record(connection: Connection) -> tuple[repo.StoredAnswer, bool]:
            return repo.record_answer(connection, task_id, me.id, sent)

        stored, created = await writer(request).run(record)
    except ValueError as exc:  # a bad answer, or a key reused with another body
        raise services.unprocessable(str(exc)) from None
    out = services.response_out(stored)
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out
