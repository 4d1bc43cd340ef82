"""Server-rendered web pages: sign in, projects, annotate, leaderboard, admin.

Authentication: ``POST /signin`` checks the pasted token and stores it in an HttpOnly,
SameSite=Strict cookie (``Secure`` over HTTPS). Each page carries a CSRF token derived from the
session token (an HMAC, so it changes with the session and cannot be guessed without it); every
cookie-authenticated POST must send it, in the form field ``csrf_token`` or the header
``X-CSRF-Token``, else 403. The sign-in form itself uses a double-submit cookie.

The annotation page's JavaScript does not call the bearer-token API: it calls two same-origin,
cookie-authenticated page endpoints, ``GET /projects/{id}/next`` (the next task as JSON, 204
when all is done) and ``POST /projects/{id}/tasks/{task}/vote`` (with ``X-CSRF-Token`` and an
``Idempotency-Key`` fixed per task, so a double keypress stores one vote). The same vote route
accepts a plain form post and redirects, so the page works without JavaScript. The JSON API
stays bearer-only, with no cookie (and so no CSRF) surface.

All queries go through :mod:`crowdtune.store.repository`; Jinja2 autoescapes every template,
and item text is rendered by :func:`safe_markdown`, which escapes everything first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path
from typing import Any, Literal, get_args

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from crowdtune.records import comparisons_frame, join_turns
from crowdtune.server.app import _EXPORTS, STATS_BOOTSTRAP, _csv_items, export_download, get_session
from crowdtune.server.schemas import MAX_ROW_ID, RoundIn, RoundModel, RoundScheme, RoundStrategy
from crowdtune.server.scoring import contributor_breakdown
from crowdtune.store import ConflictError, ForbiddenError, NotFoundError
from crowdtune.store import repository as repo
from crowdtune.store.models import VERDICT_CODES, Contributor, Project
from crowdtune.tables import jsonable

SESSION_COOKIE = "crowdtune_session"
SIGNIN_COOKIE = "crowdtune_signin_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: Content-Security-Policy of every page: no inline script, nothing from other origins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

templates = Environment(
    loader=PackageLoader("crowdtune.server", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class PageError(Exception):
    """An error shown as an HTML page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInNeeded(Exception):
    """No valid session cookie: pages redirect to the sign-in page, JSON calls get 401."""


# ---------------------------------------------------------------------------------------------
# safe rendering of item text

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)(?:\n```[ \t]*$|\Z)", re.S | re.M)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")


def _inline(text: str) -> str:
    """Inline code and bold on text that is already escaped."""
    parts = re.split(r"(`[^`\n]+`)", text)
    out = []
    for part in parts:
        if len(part) > 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{part[1:-1]}</code>")
        else:
            out.append(re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", part))
    return "".join(out)


def _blocks(text: str) -> list[str]:
    html = []
    for block in re.split(r"\n[ \t]*\n", text.strip("\n")):
        lines = block.split("\n")
        if not block.strip():
            continue
        if all(_LIST_ITEM.match(line) for line in lines):
            tag = "ol" if re.match(r"^\s*\d", lines[0]) else "ul"
            items = "".join(f"<li>{_inline(_LIST_ITEM.sub('', line))}</li>" for line in lines)
            html.append(f"<{tag}>{items}</{tag}>")
        else:
            html.append("<p>" + "<br>\n".join(_inline(line) for line in lines) + "</p>")
    return html


def safe_markdown(text: str) -> Markup:
    """A tiny, safe subset of Markdown: everything is HTML-escaped first, then fenced code
    blocks, paragraphs, line breaks, lists, ``inline code`` and **bold** become tags.

    >>> str(safe_markdown("**hi** <script>alert(1)</script>"))
    '<p><strong>hi</strong> &lt;script&gt;alert(1)&lt;/script&gt;</p>'
    """
    escaped = str(escape(text.replace("\r\n", "\n")))
    html: list[str] = []
    position = 0
    for fence in _FENCE.finditer(escaped):
        html.extend(_blocks(escaped[position : fence.start()]))
        html.append(f"<pre><code>{fence.group(1)}</code></pre>")
        position = fence.end()
    html.extend(_blocks(escaped[position:]))
    return Markup("\n".join(html))  # noqa: S704 (built only from escaped text)


# ---------------------------------------------------------------------------------------------
# sessions and CSRF


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: an HMAC of a fixed label keyed by the session token."""
    return hmac.new(session_token.encode(), b"crowdtune-csrf", hashlib.sha256).hexdigest()


def _signed_in(request: Request, session: Session) -> tuple[Contributor, str]:
    token = request.cookies.get(SESSION_COOKIE, "")
    contributor = repo.contributor_by_token(session, token) if token else None
    if contributor is None:
        raise SignInNeeded
    return contributor, token


def _same(sent: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str (a crafted field would be a 500).
    return hmac.compare_digest(sent.encode(), expected.encode())


def _check_csrf(request: Request, token: str, sent: str | None) -> None:
    sent = sent or request.headers.get(CSRF_HEADER, "")
    if not sent or not _same(sent, csrf_token(token)):
        raise PageError(403, "missing or wrong CSRF token; reload the page and try again")


def _page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=code, headers=_headers())


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _project(session: Session, project_id: int) -> Project:
    _check_id(project_id, "project")
    try:
        return repo.get_project(session, project_id)
    except NotFoundError as exc:
        raise PageError(404, str(exc)) from None


def _check_id(row_id: int, what: str) -> None:
    # An id past what the database holds would fail inside the query (a 500): no such row.
    if not 1 <= row_id <= MAX_ROW_ID:
        raise PageError(404, f"no {what} with id {row_id}")


def _projects(session: Session) -> list[Project]:
    return repo.list_projects(session)


def my_progress(session: Session, project_id: int, contributor_id: int) -> dict[str, int]:
    """``answered``: this contributor's votes in the project; ``total``: the most they can
    give (one per item)."""
    votes = repo.project_votes(session, project_id)
    answered = sum(vote.contributor_id == contributor_id for vote in votes)
    total = repo.progress(session, project_id).items
    return {"answered": answered, "total": max(total, answered)}


def _task_json(task: Any) -> dict[str, Any]:
    item = task.item
    return {
        "task_id": task.id,
        "idempotency_key": f"task-{task.id}",
        "prompt_html": str(safe_markdown(join_turns(item.prompt))),
        "response_a_html": str(safe_markdown(join_turns(item.response_a))),
        "response_b_html": str(safe_markdown(join_turns(item.response_b))),
    }


# ---------------------------------------------------------------------------------------------
# routes

router = APIRouter(include_in_schema=False)
SessionDep = Depends(get_session)


@router.get("/", response_class=HTMLResponse)
def signin_page(request: Request, session: Session = SessionDep) -> HTMLResponse:
    try:
        _signed_in(request, session)
        return RedirectResponse("/projects", 303)  # type: ignore[return-value]
    except SignInNeeded:
        pass
    nonce = secrets.token_urlsafe(24)
    response = _page(request, "signin.html", csrf=nonce, error=None)
    _set_cookie(request, response, SIGNIN_COOKIE, nonce)
    return response


def _set_cookie(request: Request, response: HTTPResponse, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=request.url.scheme == "https",
        path="/",
    )  # fmt: skip


@router.post("/signin")
def signin(
    request: Request,
    token: str = Form(""),
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    session: Session = SessionDep,
) -> HTTPResponse:
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not _same(csrf_token_field, expected):
        raise PageError(403, "the sign-in form expired or came from elsewhere; reload and retry")
    token = token.strip()
    if repo.contributor_by_token(session, token) is None:
        return _page(request, "signin.html", 401, csrf=expected, error="Unknown token.")
    response = RedirectResponse("/projects", 303)
    _set_cookie(request, response, SESSION_COOKIE, token)
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(
    request: Request,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    session: Session = SessionDep,
) -> HTTPResponse:
    _, token = _signed_in(request, session)
    _check_csrf(request, token, csrf_token_field)
    response = RedirectResponse("/", 303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, session: Session = SessionDep) -> HTMLResponse:
    me, token = _signed_in(request, session)
    rows = [{"project": p, "mine": my_progress(session, p.id, me.id)} for p in _projects(session)]
    return _page(request, "projects.html", me=me, csrf=csrf_token(token), rows=rows)


@router.get("/projects/{project_id}/annotate", response_class=HTMLResponse)
def annotate_page(project_id: int, request: Request, session: Session = SessionDep) -> Any:
    me, token = _signed_in(request, session)
    _require(me, "annotator", "admin")
    project = _project(session, project_id)
    task = repo.next_task(session, project_id, me.id)
    return _page(
        request,
        "annotate.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        task=_task_json(task) if task else None,
        progress=my_progress(session, project_id, me.id),
        voted=request.query_params.get("voted"),
    )


@router.get("/projects/{project_id}/next")
def next_task_json(project_id: int, request: Request, session: Session = SessionDep) -> Any:
    """The next task for the annotation page's script (JSON), or 204 when all is done."""
    me, _ = _signed_in(request, session)
    _require(me, "annotator", "admin")
    _project(session, project_id)
    task = repo.next_task(session, project_id, me.id)
    progress = my_progress(session, project_id, me.id)
    if task is None:
        return HTTPResponse(
            status_code=204, headers={"X-Progress": "{answered}/{total}".format(**progress)}
        )
    return JSONResponse({**_task_json(task), "progress": progress}, headers=_headers())


@router.post("/projects/{project_id}/tasks/{task_id}/vote")
async def vote(project_id: int, task_id: int, request: Request) -> Any:
    """Store a vote. JSON (``{"verdict": ..., "seconds": ...}`` with ``X-CSRF-Token`` and
    ``Idempotency-Key``) answers JSON; a form post (``verdict``, ``csrf_token``,
    ``idempotency_key``) redirects back to the annotation page."""
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
        body = {k: form.get(k) for k in ("verdict", "seconds")}
        sent_csrf, key = str(form.get(CSRF_FIELD, "")), str(form.get("idempotency_key") or "")
    factory = request.app.state.sessions
    with factory() as session:
        me, token = _signed_in(request, session)
        _check_csrf(request, token, sent_csrf)
        _require(me, "annotator", "admin")
        _project(session, project_id)
        _check_id(task_id, "task")
        verdict = body.get("verdict")
        if verdict not in ("a", "b", "tie"):
            return _vote_error(is_json, 422, "verdict must be 'a', 'b' or 'tie'")
        seconds = body.get("seconds")
        try:
            seconds = None if seconds in (None, "") else float(seconds)
            stored, created = repo.submit_response(
                session, task_id, me.id, verdict, None, seconds, key or f"task-{task_id}"
            )
        except (ValueError, TypeError) as exc:
            return _vote_error(is_json, 422, str(exc))
        except ForbiddenError as exc:
            return _vote_error(is_json, 403, str(exc))
        except NotFoundError as exc:
            return _vote_error(is_json, 404, str(exc))
        except ConflictError as exc:
            return _vote_error(is_json, 409, str(exc))
        code = VERDICT_CODES[stored.verdict]
        if not is_json:
            return RedirectResponse(f"/projects/{project_id}/annotate?voted={code}", 303)
        return JSONResponse(
            {
                "response_id": stored.id,
                "task_id": stored.task_id,
                "verdict": code,
                "replayed": not created,
                "progress": my_progress(session, project_id, me.id),
            },
            status_code=201 if created else 200,
        )


def _vote_error(is_json: bool, status: int, message: str) -> Any:
    if is_json:
        return JSONResponse({"detail": message}, status)
    raise PageError(status, message)


def _require(me: Contributor, *roles: str) -> None:
    if me.role not in roles:
        raise PageError(403, f"this page needs the role {' or '.join(roles)}; you are {me.role}")


@router.get("/projects/{project_id}/leaderboard", response_class=HTMLResponse)
def leaderboard_page(project_id: int, request: Request, session: Session = SessionDep) -> Any:
    from crowdtune.server.rounds import project_credit

    me, token = _signed_in(request, session)
    project = _project(session, project_id)
    credit, note = project_credit(session, project_id)
    rows = contributor_breakdown(repo.project_votes(session, project_id), credit)
    return _page(
        request,
        "leaderboard.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        rows=rows,
        credit_note=note,
    )


def _stats(session: Session, project_id: int) -> dict[str, Any]:
    from crowdtune.preference.agreement import agreement

    counts = repo.progress(session, project_id).to_dict()
    comparisons = repo.project_comparisons(session, project_id)
    try:
        result = agreement(comparisons_frame(comparisons), n_bootstrap=STATS_BOOTSTRAP)
    except ValueError as exc:
        return {"progress": counts, "agreement": None,
                "reason": "no votes yet" if not comparisons else str(exc)}  # fmt: skip
    return {"progress": counts, "agreement": jsonable(result.to_dict()), "reason": None}


@router.get("/projects/{project_id}/admin", response_class=HTMLResponse)
def admin_page(project_id: int, request: Request, session: Session = SessionDep) -> Any:
    me, token = _signed_in(request, session)
    _require(me, "admin")
    project = _project(session, project_id)
    return _page(
        request,
        "admin.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        stats=_stats(session, project_id),
        formats=list(_EXPORTS),
        message=request.query_params.get("imported"),
        rounds=[stored.details for stored in repo.project_rounds(session, project_id)],
        round_choices=ROUND_CHOICES,
        ran=request.query_params.get("round"),
    )


#: The choices of the admin page's round form: the API's (``RoundIn``).
ROUND_CHOICES = {
    "strategy": get_args(RoundStrategy),
    "scheme": get_args(RoundScheme),
    "model": get_args(RoundModel),
}


@router.post("/projects/{project_id}/admin/rounds")
def run_round_page(
    project_id: int,
    request: Request,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    strategy: str = Form("random"),
    scheme: str = Form("rank"),
    model: str = Form("length"),
    n_groups: str = Form("4"),
    seed: str = Form(""),
    session: Session = SessionDep,
) -> Any:
    """Run a Crowd-SFT round from the admin page (the API's settings, as form fields) and
    go back to the page, which lists the rounds. A plain (synchronous) route: the round is
    CPU-bound and runs in the server's thread pool, not on its event loop."""
    from pydantic import ValidationError

    from crowdtune.crowd.feedback.round import RoundSettings
    from crowdtune.server.rounds import run_project_round

    me, token = _signed_in(request, session)
    _check_csrf(request, token, csrf_token_field)
    _require(me, "admin")
    _project(session, project_id)
    fields = {"strategy": strategy, "scheme": scheme, "model": model, "n_groups": n_groups}
    try:
        body = RoundIn.model_validate({**fields, "seed": seed.strip() or None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PageError(422, problems) from None
    try:
        stored = run_project_round(session, project_id, RoundSettings(**body.model_dump()))
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    number = stored.details["round_number"]
    return RedirectResponse(f"/projects/{project_id}/admin?round={number}#rounds", 303)


@router.post("/projects/{project_id}/admin/items")
async def import_items(project_id: int, request: Request) -> Any:
    """Import an arena CSV uploaded from the admin page (field ``file``, optional ``gold``)."""
    form = await request.form()
    factory = request.app.state.sessions
    with factory() as session:
        me, token = _signed_in(request, session)
        _check_csrf(request, token, str(form.get(CSRF_FIELD, "")))
        _require(me, "admin")
        _project(session, project_id)
        from fastapi import HTTPException

        try:
            items = await _csv_items(request, form.get("gold") == "true")
            created = repo.add_items(session, project_id, items)
        except HTTPException as exc:
            raise PageError(exc.status_code, str(exc.detail)) from None
        except ValueError as exc:
            raise PageError(422, str(exc)) from None
        except ConflictError as exc:
            raise PageError(409, str(exc)) from None
    return RedirectResponse(f"/projects/{project_id}/admin?imported={len(created)}", 303)


@router.get("/projects/{project_id}/admin/export")
def export_page(
    project_id: int,
    request: Request,
    format: Literal["arena-csv", "jsonl", "trl"] = "jsonl",
    session: Session = SessionDep,
) -> HTTPResponse:
    """The API's export, for a signed-in admin's browser."""
    me, _ = _signed_in(request, session)
    _require(me, "admin")
    _project(session, project_id)
    return export_download(session, project_id, format)


def install(app: Any) -> None:
    """Mount the pages, their error handlers and the static files on ``app``."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> HTMLResponse:
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"detail": exc.message}, exc.status)  # type: ignore[return-value]
        return _page(request, "error.html", exc.status, status=exc.status, message=exc.message)

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> HTTPResponse:
        wants_json = request.headers.get("accept", "").startswith("application/json")
        if request.method != "GET" or wants_json:
            return JSONResponse({"detail": "sign in first"}, 401)
        return RedirectResponse("/", 303)
