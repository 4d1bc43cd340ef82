"""What every page route uses: the session cookie and CSRF tokens, rendering a template with the
pages' security headers, and the error pages (:class:`PageError`, :class:`SignInNeeded` and
their handlers, which :func:`crowdtune.server.create_app` installs)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import HTTPException, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.orm import Session

from crowdtune.server.limits import count_contributor, count_failure
from crowdtune.server.schemas import MAX_ROW_ID
from crowdtune.server.services import check_role
from crowdtune.store import CredentialError, NotFoundError
from crowdtune.store import repository as repo
from crowdtune.store.models import Contributor, Project

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
# sessions and CSRF


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: an HMAC of a fixed label keyed by the session's id. Only
    the session's holder can compute it, and it stops working when the session ends (the id
    is then refused)."""
    return hmac.new(session_id.encode(), b"crowdtune-csrf", hashlib.sha256).hexdigest()


def signed_in(request: Request, session: Session) -> tuple[Contributor, str]:
    """The contributor whose session cookie came with the request, and the cookie's session id;
    :class:`SignInNeeded` unless the session is live (not signed out, expired, idle too long,
    or of a revoked or expired token). Marks the session used
    (:func:`~crowdtune.store.repository.session_contributor`)."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not session_id:
        raise SignInNeeded
    state = request.app.state
    try:
        contributor = repo.session_contributor(
            session, session_id, policy=state.session_policy, now=state.clock()
        )
    except CredentialError:
        count_failure(request, session_id)
        raise SignInNeeded from None
    count_contributor(request, contributor.id)
    return contributor, session_id


def same(sent: str, expected: str) -> bool:
    """Whether a secret sent with the request is the expected one (in constant time)."""
    # Bytes, because compare_digest refuses non-ASCII str (a crafted field would be a 500).
    return hmac.compare_digest(sent.encode(), expected.encode())


def check_csrf(request: Request, session_id: str, sent: str | None) -> None:
    """403 unless the request sent the CSRF token of session ``session_id`` (``sent``, the form
    field, else the :data:`CSRF_HEADER` header)."""
    sent = sent or request.headers.get(CSRF_HEADER, "")
    if not sent or not same(sent, csrf_token(session_id)):
        raise PageError(403, "missing or wrong CSRF token; reload the page and try again")


def set_cookie(
    request: Request, response: HTTPResponse, name: str, value: str, max_age: int | None = None
) -> None:
    """Set an HttpOnly, SameSite=Strict cookie (``Secure`` over HTTPS) on the whole site, kept
    by the browser for ``max_age`` seconds (None: until it closes)."""
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip


def clear_session_cookie(response: HTTPResponse) -> None:
    """Tell the browser to drop its session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def require(me: Contributor, *roles: str) -> None:
    """403 as an error page unless the contributor has one of ``roles``."""
    try:
        check_role(me.role, roles, what="this page")
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None


# ---------------------------------------------------------------------------------------------
# rendering


def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered with ``context``, with the pages' headers."""
    html = templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=code, headers=page_headers())


def page_headers() -> dict[str, str]:
    """The security headers of every page: CSP, no sniffing, same-origin referrer, no store."""
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def page_project(session: Session, project_id: int) -> Project:
    """The project of a page's URL; a 404 page when there is none."""
    check_id(project_id, "project")
    try:
        return repo.get_project(session, project_id)
    except NotFoundError as exc:
        raise PageError(404, str(exc)) from None


def check_id(row_id: int, what: str) -> None:
    """A 404 page for an id past what the database holds (inside the query it would be a
    500)."""
    if not 1 <= row_id <= MAX_ROW_ID:
        raise PageError(404, f"no {what} with id {row_id}")


# ---------------------------------------------------------------------------------------------
# error pages


def _wants_json(request: Request) -> bool:
    return request.headers.get("accept", "").startswith("application/json")


async def page_error(request: Request, exc: PageError) -> HTTPResponse:
    """A :class:`PageError` as an HTML error page, or ``{"detail": ...}`` to a JSON caller."""
    if _wants_json(request):
        return JSONResponse({"detail": exc.message}, exc.status)
    return render(request, "error.html", exc.status, status=exc.status, message=exc.message)


async def sign_in_needed(request: Request, exc: SignInNeeded) -> HTTPResponse:
    """:class:`SignInNeeded`: a GET page goes to the sign-in page; anything else gets 401. A
    session cookie that came along is stale: the browser is told to drop it."""
    response: HTTPResponse
    if request.method != "GET" or _wants_json(request):
        response = JSONResponse({"detail": "sign in first"}, 401)
    else:
        response = RedirectResponse("/", 303)
    if SESSION_COOKIE in request.cookies:
        clear_session_cookie(response)
    return response
