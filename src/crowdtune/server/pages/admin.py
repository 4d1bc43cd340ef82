"""The admin page of a project and its forms: stats, Crowd-SFT rounds, CSV import, exports."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from crowdtune.server import services, uploads
from crowdtune.server.deps import SessionDep
from crowdtune.server.pages.web import (
    CSRF_FIELD,
    PageError,
    check_csrf,
    csrf_token,
    page_project,
    render,
    require,
    signed_in,
)
from crowdtune.server.schemas import RoundIn, RoundModel, RoundScheme, RoundStrategy
from crowdtune.store import ConflictError
from crowdtune.store import repository as repo

router = APIRouter(include_in_schema=False)

#: The choices of the admin page's round form: the API's (``RoundIn``).
ROUND_CHOICES = {
    "strategy": get_args(RoundStrategy),
    "scheme": get_args(RoundScheme),
    "model": get_args(RoundModel),
}


@router.get("/projects/{project_id}/admin", response_class=HTMLResponse)
def admin_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    require(me, "admin")
    project = page_project(session, project_id)
    return render(
        request,
        "admin.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        stats=services.project_stats(session, project_id),
        formats=list(services.EXPORTS),
        message=request.query_params.get("imported"),
        rounds=[stored.details for stored in repo.project_rounds(session, project_id)],
        round_choices=ROUND_CHOICES,
        ran=request.query_params.get("round"),
    )


@router.post("/projects/{project_id}/admin/rounds")
def run_round_page(
    project_id: int,
    request: Request,
    session: SessionDep,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    strategy: str = Form("random"),
    scheme: str = Form("rank"),
    model: str = Form("length"),
    n_groups: str = Form("4"),
    seed: str = Form(""),
) -> Any:
    """Run a Crowd-SFT round from the admin page (the API's settings, as form fields) and
    go back to the page, which lists the rounds. A plain (synchronous) route: the round is
    CPU-bound and runs in the server's thread pool, not on its event loop."""
    me, token = signed_in(request, session)
    check_csrf(request, token, csrf_token_field)
    require(me, "admin")
    page_project(session, project_id)
    fields = {"strategy": strategy, "scheme": scheme, "model": model, "n_groups": n_groups}
    try:
        body = RoundIn.model_validate({**fields, "seed": seed.strip() or None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PageError(422, problems) from None
    try:
        stored = services.run_round(session, project_id, body)
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    number = stored.details["round_number"]
    return RedirectResponse(f"/projects/{project_id}/admin?round={number}#rounds", 303)


@router.post("/projects/{project_id}/admin/items")
async def import_items(project_id: int, request: Request) -> Any:
    """Import an arena CSV uploaded from the admin page (field ``file``, optional ``gold``).
    Everything past reading the form (sign-in, decompressing, parsing, storing) runs on a
    worker thread, so a large import never stalls other requests."""
    form = await request.form()
    created = await run_in_threadpool(_import_upload, request, project_id, form)
    return RedirectResponse(f"/projects/{project_id}/admin?imported={created}", 303)


def _import_upload(request: Request, project_id: int, form: FormData) -> int:
    """Check the admin's session, then read and store the upload; the items it created."""
    factory = request.app.state.sessions
    with factory() as session:
        me, session_id = signed_in(request, session)
        check_csrf(request, session_id, str(form.get(CSRF_FIELD, "")))
        require(me, "admin")
        page_project(session, project_id)
        session.commit()  # end the read: no transaction stays open while the file is parsed
        try:
            items = uploads.upload_items(
                form, gold=form.get("gold") == "true", limit=uploads.upload_limit(request)
            )
            return repo.add_items(session, project_id, items)
        except HTTPException as exc:
            raise PageError(exc.status_code, str(exc.detail)) from None
        except ValueError as exc:
            raise PageError(422, str(exc)) from None
        except ConflictError as exc:
            raise PageError(services.error_status(exc), str(exc)) from None


@router.get("/projects/{project_id}/admin/export")
def export_page(
    project_id: int,
    request: Request,
    session: SessionDep,
    format: services.ExportFormat = "jsonl",
) -> HTTPResponse:
    """The API's export, for a signed-in admin's browser."""
    me, _ = signed_in(request, session)
    require(me, "admin")
    page_project(session, project_id)
    return services.export_download(session, project_id, format)
