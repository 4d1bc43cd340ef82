"""API routes of projects and their items: create a project, import items (a JSON list or an
uploaded arena CSV)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from crowdtune.server import services, uploads
from crowdtune.server.deps import Admin, SessionDep
from crowdtune.server.schemas import Created, ItemIn, ItemsCreated, ProjectIn, RowId
from crowdtune.store import repository as repo

router = APIRouter()
_ITEMS = TypeAdapter(list[ItemIn])


async def item_payload(request: Request) -> list[dict[str, Any]]:
    """The items of an import: a JSON list of :class:`ItemIn`, or a multipart arena CSV
    (field ``file``) whose winner columns become gold answers with ``?gold=true``. Parsed on a
    worker thread: a large import never stalls other requests."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await uploads.csv_items(request, request.query_params.get("gold", "false") == "true")
    return await run_in_threadpool(json_items, await request.body())


def json_items(body: bytes) -> list[dict[str, Any]]:
    """The items of a JSON list of :class:`ItemIn`; 422 naming the field of a bad one."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise services.unprocessable(
            "expected a JSON list of items, or a multipart/form-data upload of an arena CSV "
            "in the field 'file'"
        ) from None
    try:
        items = _ITEMS.validate_python(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    return [item.model_dump(exclude_none=True) for item in items]


@router.post("/projects", status_code=201, response_model=Created, tags=["admin"])
def create_project(body: ProjectIn, session: SessionDep, admin: Admin) -> Created:
    """Create a project whose items each go to ``overlap`` distinct annotators; 409 when
    the name is taken."""
    try:
        project = repo.create_project(session, body.name, overlap=body.overlap, kind=body.kind)
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return Created(id=project.id)


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
                "description": "CSV only: store each row's winner as the item's gold answer.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": ItemIn.model_json_schema()}
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
    """Import items, all or none: a JSON list of items, or an arena CSV uploaded as
    multipart form field ``file``. 422 names the bad field (or CSV row and column); 409 when
    an id repeats."""
    try:
        created = repo.add_items(session, project_id, items)
    except ValueError as exc:
        raise services.unprocessable(str(exc)) from None
    return ItemsCreated(created=created)
