"""API routes of projects and their items: list the projects, create a project (pairwise,
revision or rating), import items (a JSON list, or an uploaded file: an arena CSV for a pairwise
project, JSON Lines or CSV for the others)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from crowdtune.server import services, uploads
from crowdtune.server.deps import Admin, SessionDep, SignedIn
from crowdtune.server.schemas import (
    ITEM_MODELS,
    Created,
    ItemsCreated,
    ProjectIn,
    ProjectOut,
    RowId,
)
from crowdtune.store import repository as repo

router = APIRouter()
#: A JSON list of the items of each project kind.
_ITEMS = {kind: TypeAdapter(list[model]) for kind, model in ITEM_MODELS.items()}  # type: ignore[valid-type]


def _kind_and_scale(session: Session, project_id: int) -> tuple[str, tuple[int, int] | None]:
    """The project's kind and scale (404 when there is none); ends the read."""
    try:
        project = repo.get_project(session, project_id)
        return project.kind, project.scale
    finally:
        session.commit()


async def item_payload(
    request: Request, project_id: RowId, session: SessionDep, admin: Admin
) -> list[dict[str, Any]]:
    """The items of an import, checked for the project's kind: a JSON list of items, or a
    multipart file (field ``file``): an arena CSV (whose winner columns become gold answers
    with ``?gold=true``) for a pairwise project, JSON Lines or CSV for the others. Parsed on a
    worker thread: a large import never stalls other requests."""
    kind, scale = await run_in_threadpool(_kind_and_scale, session, project_id)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        gold = request.query_params.get("gold", "false") == "true"
        return await uploads.file_items(request, gold=gold, kind=kind, scale=scale)
    return await run_in_threadpool(json_items, await request.body(), kind, scale)


def json_items(
    body: bytes, kind: str = "pairwise", scale: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """The items of a JSON list for a project of ``kind`` (:data:`ITEM_MODELS`; a rating
    item's gold answer on ``scale``); 422 naming the field of a bad one."""
    try:
        raw = json.loads(body)
    except ValueError:
        upload = "an arena CSV" if kind == "pairwise" else "a JSON Lines or CSV file"
        raise services.unprocessable(
            f"expected a JSON list of items, or a multipart/form-data upload of {upload} in "
            "the field 'file'"
        ) from None
    try:
        items: list[BaseModel] = _ITEMS[kind].validate_python(raw, context={"scale": scale})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    return [item.model_dump(exclude_none=True) for item in items]


@router.get("/projects", response_model=list[ProjectOut], tags=["annotate"])
def list_projects(session: SessionDep, me: SignedIn) -> list[ProjectOut]:
    """Every project, oldest first: its id, name and kind (so a client can find a project by
    name, and knows what its tasks ask before it asks for one)."""
    projects = [ProjectOut(id=p.id, name=p.name, kind=p.kind) for p in repo.list_projects(session)]
    session.commit()
    return projects


@router.post("/projects", status_code=201, response_model=Created, tags=["admin"])
def create_project(body: ProjectIn, session: SessionDep, admin: Admin) -> Created:
    """Create a project whose items each go to ``overlap`` distinct annotators: ``pairwise``
    (compare two answers: the default), ``revision`` (rewrite an answer) or ``rating`` (score
    an answer on ``scale``, by default 1 to 7). 409 when the name is taken; 422 naming the
    field for a scale on a project that is not a rating one, or one whose ``min`` is not below
    its ``max``."""
    scale = None if body.scale is None else (body.scale.min, body.scale.max)
    try:
        project = repo.create_project(
            session,
            body.name,
            overlap=body.overlap,
            kind=body.kind,
            scale=scale,
            assignment=body.assignment,
            editor_prefill=body.editor_prefill,
            base_model=body.base_model,
        )
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return Created(id=project.id)


def _list_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": model.model_json_schema(), "title": model.__name__}


@router.post(
    "/projects/{project_id}/items",
    status_code=201,
    response_model=ItemsCreated,
    tags=["admin"],
    openapi_extra={
        "parameters": [
            {
                "name": "gold",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
                "description": "Arena CSV only: store each row's winner as the item's gold answer.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [_list_of(model) for model in ITEM_MODELS.values()]}
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        },
    },
)
def add_items(
    project_id: RowId,
    session: SessionDep,
    admin: Admin,
    items: Annotated[list[dict[str, Any]], Depends(item_payload)],
) -> ItemsCreated:
    """Import items, all or none, as a JSON list or an uploaded file (multipart field
    ``file``, optionally gzipped).

    - pairwise: ``{"prompt", "response_a", "response_b", "model_a"?, "model_b"?, "gold"?,
      "id"?}``, or an arena CSV;
    - revision: ``{"prompt", "response", "reference"?, "id"?}`` (``reference``: a known good
      revision);
    - rating: ``{"prompt", "response", "gold"?, "id"?}`` (``gold``: the accepted score, or
      ``[low, high]``, on the project's scale).

    A revision or rating file is JSON Lines (``.jsonl``) or CSV (``.csv``) with those fields
    as columns. 422 names the bad field (or the file's row and column); 409 when an id
    repeats."""
    try:
        created = repo.add_items(session, project_id, items)
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return ItemsCreated(created=created)
