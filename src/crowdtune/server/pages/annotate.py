"""The pages every contributor uses: sign in and out, the projects, the annotation page of each
project kind (with the two JSON endpoints its script calls: the next task, and the answer) and
the leaderboard."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from crowdtune.server import services
from crowdtune.server.deps import SessionDep
from crowdtune.server.limits import count_failure
from crowdtune.server.pages.answers import (
    MAX_REASON,
    ack_key,
    ack_message,
    answer_fields,
    scale_buttons,
    scale_hint,
    task_json,
)
from crowdtune.server.pages.web import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    PageError,
    SignInNeeded,
    check_csrf,
    check_id,
    clear_session_cookie,
    csrf_token,
    page_headers,
    page_project,
    render,
    require,
    same,
    set_cookie,
    signed_in,
)
from crowdtune.store import ConflictError, CredentialError, ForbiddenError, NotFoundError
from crowdtune.store import repository as repo

router = APIRouter(include_in_schema=False)


def my_progress(session: Session, project_id: int, contributor_id: int) -> dict[str, int]:
    """``answered``: the tasks this contributor closed in the project (answers and skips, in
    any kind); ``total``: the most they can close (one per item)."""
    answered = repo.answered_count(session, project_id, contributor_id)
    total = repo.progress(session, project_id).items
    return {"answered": answered, "total": max(total, answered)}


@router.get("/", response_class=HTMLResponse)
def signin_page(request: Request, session: SessionDep) -> HTMLResponse:
    try:
        signed_in(request, session)
        return RedirectResponse("/projects", 303)  # type: ignore[return-value]
    except SignInNeeded:
        pass
    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", csrf=nonce, error=None)
    set_cookie(request, response, SIGNIN_COOKIE, nonce)
    if SESSION_COOKIE in request.cookies:  # one that has ended
        clear_session_cookie(response)
    return response


@router.post("/signin")
def signin(
    request: Request,
    session: SessionDep,
    token: str = Form(""),
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
) -> HTTPResponse:
    """Sign in with a token: a new session, whose random id (never the token) goes in the
    session cookie."""
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not same(csrf_token_field, expected):
        raise PageError(403, "the sign-in form expired or came from elsewhere; reload and retry")
    policy = request.app.state.session_policy
    try:
        _, session_id = repo.start_session(
            session, token.strip(), policy=policy, now=request.app.state.clock()
        )
    except CredentialError as exc:
        count_failure(request, token.strip())
        error = str(exc)  # "unknown token", or why the token no longer works
        return render(
            request, "signin.html", 401, csrf=expected, error=f"{error[:1].upper()}{error[1:]}."
        )
    response = RedirectResponse("/projects", 303)
    max_age = int(policy.max_age.total_seconds())
    set_cookie(request, response, SESSION_COOKIE, session_id, max_age=max_age)
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(
    request: Request,
    session: SessionDep,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
) -> HTTPResponse:
    """Sign out: the session is deleted, so its cookie and CSRF token stop working."""
    _, session_id = signed_in(request, session)
    check_csrf(request, session_id, csrf_token_field)
    repo.end_session(session, session_id)
    response = RedirectResponse("/", 303)
    clear_session_cookie(response)
    return response


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, session: SessionDep) -> HTMLResponse:
    me, token = signed_in(request, session)
    rows = [
        {"project": p, "mine": my_progress(session, p.id, me.id)}
        for p in repo.list_projects(session)
    ]
    return render(request, "projects.html", me=me, csrf=csrf_token(token), rows=rows)


@router.get("/projects/{project_id}/annotate", response_class=HTMLResponse)
def annotate_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    require(me, "annotator", "admin")
    project = page_project(session, project_id)
    task = repo.next_task(session, project_id, me.id)
    buttons = scale_buttons(project.scale) if project.scale else None
    return render(
        request,
        "annotate.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        task=task_json(task, project) if task else None,
        progress=my_progress(session, project_id, me.id),
        ack=ack_message(request.query_params.get("voted")),
        max_revision=repo.MAX_REVISION,
        max_reason=MAX_REASON,
        scale=project.scale,
        buttons=buttons,
        scale_hint=scale_hint(buttons),
    )


@router.get("/projects/{project_id}/next")
def next_task_json(project_id: int, request: Request, session: SessionDep) -> Any:
    """The next task for the annotation page's script (JSON), or 204 when all is done."""
    me, _ = signed_in(request, session)
    require(me, "annotator", "admin")
    project = page_project(session, project_id)
    task = repo.next_task(session, project_id, me.id)
    progress = my_progress(session, project_id, me.id)
    if task is None:
        return HTTPResponse(
            status_code=204, headers={"X-Progress": "{answered}/{total}".format(**progress)}
        )
    return JSONResponse({**task_json(task, project), "progress": progress}, headers=page_headers())


@router.post("/projects/{project_id}/tasks/{task_id}/vote")
async def vote(project_id: int, task_id: int, request: Request) -> Any:
    """Store the answer to a task, of any kind: a vote, a revision, a score or a skip.

    JSON (``{"verdict": "a"|"b"|"tie"}``, ``{"revision": text}``, ``{"score": n}`` or
    ``{"skip": true, "reason": text}``, each with an optional ``"seconds"``; the
    ``X-CSRF-Token`` and ``Idempotency-Key`` headers) answers JSON: the stored answer, whether it
    was a replay, the contributor's progress and the line that acknowledges it. A form post
    (the same names as fields, with ``csrf_token`` and ``idempotency_key``) redirects back to
    the annotation page. The answer must suit the project's kind (422 otherwise, naming the
    field, as for an empty revision or a skip without its reason); a task of another project
    than the URL's is 404. The body is read here; the rest (sign-in, the store) runs on a
    worker thread, so an answer that waits for the database never stalls other requests."""
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if is_json:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"detail": "expected a JSON object"}, 422)
        sent_csrf, key = None, request.headers.get("Idempotency-Key")
    else:
        form = await request.form()
        names = ("verdict", "revision", "score", "skip", "reason", "seconds")
        body = {name: form.get(name) for name in names}
        sent_csrf, key = str(form.get(CSRF_FIELD, "")), str(form.get("idempotency_key") or "")
    return await run_in_threadpool(
        _store_answer, request, project_id, task_id, body=body, is_json=is_json,
        sent_csrf=sent_csrf, key=key,
    )  # fmt: skip


def _store_answer(
    request: Request,
    project_id: int,
    task_id: int,
    *,
    body: dict[str, Any],
    is_json: bool,
    sent_csrf: str | None,
    key: str | None,
) -> Any:
    """The answer of :func:`vote` once its body is read: check the session, CSRF, role, the
    project and that the task is in it (404 otherwise), then store it."""
    factory = request.app.state.sessions
    with factory() as session:
        me, session_id = signed_in(request, session)
        check_csrf(request, session_id, sent_csrf)
        require(me, "annotator", "admin")
        page_project(session, project_id)
        check_id(task_id, "task")
        try:
            stored, created = services.vote(
                session,
                task_id,
                me.id,
                **answer_fields(body),
                idempotency_key=key or f"task-{task_id}",
                project_id=project_id,
            )
        except (ValueError, TypeError) as exc:
            return _vote_error(is_json, 422, str(exc))
        except (ForbiddenError, NotFoundError, ConflictError) as exc:
            return _vote_error(is_json, services.error_status(exc), str(exc))
        done = ack_key(stored)
        if not is_json:
            return RedirectResponse(f"/projects/{project_id}/annotate?voted={done}", 303)
        return JSONResponse(
            {
                **stored.model_dump(),
                "replayed": not created,
                "progress": my_progress(session, project_id, me.id),
                "message": ack_message(done),
            },
            status_code=201 if created else 200,
        )


def _vote_error(is_json: bool, status: int, message: str) -> Any:
    if is_json:
        return JSONResponse({"detail": message}, status)
    raise PageError(status, message)


@router.get("/projects/{project_id}/leaderboard", response_class=HTMLResponse)
def leaderboard_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    project = page_project(session, project_id)
    board = services.leaderboard(
        session,
        project_id,
        admin_view=me.role == "admin",
        scorer=request.app.state.quality_scorer,
    )
    return render(
        request,
        "leaderboard.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        rows=board["contributors"],
        credit_note=board["credit_note"],
        quality_note=board["quality_note"],
    )
