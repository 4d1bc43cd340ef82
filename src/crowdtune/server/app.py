"""The FastAPI app, assembled: :func:`create_app` reads its settings, adds the request limits,
maps store errors to statuses, mounts the API's routers under :data:`API_PREFIX`, the web pages
and ``/static``, and migrates the database when the app starts.

What each part owns: :mod:`~crowdtune.server.deps` (session, caller, roles),
:mod:`~crowdtune.server.routes` (the API, one router per resource), :mod:`~crowdtune.server.pages`
(the web pages), :mod:`~crowdtune.server.services` (what both do), :mod:`~crowdtune.server.limits`
(body size and rate). :data:`API_DESCRIPTION` is the API's description in the OpenAPI docs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from crowdtune.server.auth import TokenCache
from crowdtune.server.limits import BodySizeLimit, RateLimit
from crowdtune.server.pages import admin as admin_pages
from crowdtune.server.pages import annotate as annotate_pages
from crowdtune.server.pages.web import PageError, SignInNeeded, page_error, sign_in_needed
from crowdtune.server.routes import exports, projects, rounds, stats, tasks
from crowdtune.server.services import error_status
from crowdtune.store import (
    DEFAULT_URL,
    StoreError,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from crowdtune.store.db import in_memory, sqlite_synchronous_mode
from crowdtune.store.models import utc_now
from crowdtune.store.repository import SESSION_IDLE_TIMEOUT, SESSION_MAX_AGE, SessionPolicy

API_PREFIX = "/api/v1"
#: The API's description in the OpenAPI docs (``/docs``).
API_DESCRIPTION = """\
The FastAPI app: routes under ``/api/v1``, bearer-token auth, roles, limits, error mapping.

Every route needs ``Authorization: Bearer <token>`` (401 without one or with an unknown,
revoked or expired one) and checks the caller's role (403). Store errors map to statuses:
:class:`NotFoundError` 404,
:class:`ForbiddenError` 403, :class:`ConflictError` 409, :class:`BusyError` (the database
stayed locked) 503; malformed input is 422 naming the field
(or, for a CSV upload, the row and column). Every error body is ``{"detail": ...}``. Each
request gets one SQLAlchemy session; writes are committed by the repository before the route
answers, so an acknowledged vote is stored.

Idempotent votes: ``POST /api/v1/tasks/{task_id}/responses`` with an ``Idempotency-Key`` header
answers **201** when it stores the vote and **200** with the same body (and the header
``Idempotent-Replayed: true``) when the key was seen before, storing nothing.
"""
#: The API's routers, in the order their routes are matched.
API_ROUTERS = (projects.router, tasks.router, exports.router, stats.router, rounds.router)
#: The web pages' routers.
PAGE_ROUTERS = (annotate_pages.router, admin_pages.router)
STATIC = Path(__file__).parent / "static"


def create_app(
    db_url: str | None = None,
    *,
    max_body_bytes: int = 1_000_000,
    rate_limit_per_minute: int = 600,
    sqlite_synchronous: str = "NORMAL",
    session_hours: float = SESSION_MAX_AGE / timedelta(hours=1),
    session_idle_minutes: float = SESSION_IDLE_TIMEOUT / timedelta(minutes=1),
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """The crowdtune API for the database at ``db_url`` (default ``sqlite:///./crowdtune.db``).

    The database is migrated to the newest schema when the app starts (its lifespan).

    Parameters
    ----------
    max_body_bytes
        Largest request body accepted; larger ones get 413.
    rate_limit_per_minute
        Requests one token (or, without a token, one client address) may send to the API in
        any 60 seconds; more get 429 with ``Retry-After``.
    sqlite_synchronous
        ``NORMAL`` or ``FULL``, for a SQLite database (see
        :data:`crowdtune.store.db.SQLITE_SYNCHRONOUS`).
    session_hours, session_idle_minutes
        A web page session (after signing in with a token) ends this many hours after sign-in,
        and after this many minutes unused (:class:`~crowdtune.store.repository.SessionPolicy`).
    clock
        The current UTC time, for session and token expiry (tests pass one they move).
    """
    # Bad settings fail here, before the server starts.
    url = normalize_url(DEFAULT_URL if db_url is None else db_url)
    sqlite_synchronous = sqlite_synchronous_mode(sqlite_synchronous)
    policy = SessionPolicy(
        max_age=timedelta(hours=session_hours), idle_timeout=timedelta(minutes=session_idle_minutes)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on AnyIO's worker threads (40 by default); each holds at most one
        # connection at a time, so a pool that size never makes a request wait for one.
        threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        pool = {} if in_memory(url) else {"pool_size": min(threads, 40), "max_overflow": 10}
        engine = make_engine(url, sqlite_synchronous=sqlite_synchronous, **pool)
        app.state.tokens = TokenCache()
        upgrade(engine)
        app.state.sessions = session_factory(engine)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="crowdtune",
        summary="Collect pairwise feedback from a crowd.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.session_policy, app.state.clock = policy, clock
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RateLimit, per_minute=rate_limit_per_minute, prefix=API_PREFIX + "/")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=error_status(exc))

    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    # The web pages, their error pages and /static.
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.exception_handler(PageError)(page_error)
    app.exception_handler(SignInNeeded)(sign_in_needed)
    return app
