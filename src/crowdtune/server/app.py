"""The FastAPI app, assembled: :func:`create_app` reads its settings, adds the request limits,
maps store errors to statuses, mounts the API's routers under :data:`API_PREFIX`, the web pages
and ``/static``, and migrates the database when the app starts.

What each part owns: :mod:`~crowdtune.server.deps` (session, caller, roles),
:mod:`~crowdtune.server.routes` (the API, one router per resource), :mod:`~crowdtune.server.pages`
(the web pages), :mod:`~crowdtune.server.services` (what both do), :mod:`~crowdtune.server.limits`
(body size and rate), :mod:`~crowdtune.server.inputs` (what no request may hold).
:data:`API_DESCRIPTION` is the API's description in the OpenAPI docs.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi import Response as HTTPResponse
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from crowdtune.server.auth import TokenCache
from crowdtune.server.fit_cache import FitCache
from crowdtune.server.inputs import InputCheck, validation_error
from crowdtune.server.limits import (
    FAILED_AUTH_BURST,
    FAILED_AUTH_PER_MINUTE,
    BodySizeLimit,
    RateLimit,
    RateLimited,
    RateLimits,
)
from crowdtune.server.pages import admin as admin_pages
from crowdtune.server.pages import annotate as annotate_pages
from crowdtune.server.pages import models as model_pages
from crowdtune.server.pages.web import PageError, SignInNeeded, page_error, sign_in_needed
from crowdtune.server.routes import exports, model_board, projects, rounds, stats, tasks
from crowdtune.server.scorer import QualityScorer
from crowdtune.server.services import error_status
from crowdtune.store import (
    DEFAULT_URL,
    StoreError,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from crowdtune.store.db import (
    BUSY_TIMEOUT_MS,
    DEFAULT_SQLITE_SYNCHRONOUS,
    busy_timeout,
    in_memory,
    sqlite_synchronous_mode,
)
from crowdtune.store.group_commit import GroupCommit
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
stayed locked) 503 with ``Retry-After``; malformed input is 422 naming the field
(or, for a CSV upload, the row and column). Every error body is ``{"detail": ...}``. Each
request gets one SQLAlchemy session; writes are committed by the repository before the route
answers, so an acknowledged vote is stored. Next-task and answer requests share commits: the
writes that arrive together are committed in one transaction (group commit), and each request
is answered after that commit; one that fails gets its own error, a batch that cannot be
committed gets 503 with ``Retry-After`` for each of its requests (nothing acknowledged).

Three kinds of project: ``pairwise`` (an annotator compares two answers: a ``verdict``),
``revision`` (rewrites one: a ``revision``) and ``rating`` (scores one on the project's scale: a
``score``); any task may be skipped with a reason. ``GET .../tasks/next`` says the ``kind``, and
``GET .../export`` offers the formats of the kind (TRL-ready: preference pairs, SFT messages,
KTO rows).

Idempotent answers: ``POST /api/v1/tasks/{task_id}/responses`` with an ``Idempotency-Key``
header answers **201** when it stores the answer and **200** with the same body (and the header
``Idempotent-Replayed: true``) when the key was seen before with the same body, storing
nothing; the key again with another answer, reason or seconds is **422**.

Input that cannot break anything: no text may hold a NUL character or a lone surrogate, no
JSON number may be non-finite (``NaN``, ``Infinity``, ``1e400``) or an integer past 64 bits,
and no JSON body may nest deeper than 32 levels; each is a 422 naming the field, before
anything is stored.
"""
#: The API's routers, in the order their routes are matched.
API_ROUTERS = (
    projects.router,
    tasks.router,
    exports.router,
    stats.router,
    rounds.router,
    model_board.router,
)
#: The web pages' routers.
PAGE_ROUTERS = (annotate_pages.router, admin_pages.router, model_pages.router)
STATIC = Path(__file__).parent / "static"
#: Seconds a caller is asked to wait (``Retry-After``) after a 503 for a busy database.
BUSY_RETRY_AFTER_SECONDS = 2


async def error_answer(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """An error in the form the caller reads: ``{"detail": message}`` under the API, the
    pages' error (an HTML page, or JSON to a caller that asks for it) elsewhere; with
    ``headers``."""
    if request.url.path.startswith(API_PREFIX + "/"):
        return JSONResponse({"detail": message}, status, headers=headers)
    response = await page_error(request, PageError(status, message))
    response.headers.update(headers or {})
    return response


async def rate_limited(request: Request, exc: RateLimited) -> HTTPResponse:
    """429 with ``Retry-After`` (:mod:`~crowdtune.server.limits`)."""
    return await error_answer(request, 429, str(exc), exc.headers)


async def store_error(request: Request, exc: StoreError) -> HTTPResponse:
    """A store error with its status (:func:`~crowdtune.server.services.error_status`); a
    busy database (503) asks the caller to retry after :data:`BUSY_RETRY_AFTER_SECONDS`."""
    status = error_status(exc)
    retry = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)} if status == 503 else None
    return await error_answer(request, status, str(exc), retry)


def create_app(
    db_url: str | None = None,
    *,
    max_body_bytes: int = 1_000_000,
    max_decompressed_bytes: int | None = None,
    rate_limit_per_minute: int = 600,
    failed_auth_per_minute: float = FAILED_AUTH_PER_MINUTE,
    failed_auth_burst: int = FAILED_AUTH_BURST,
    sqlite_synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
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
    max_decompressed_bytes
        Largest uploaded file accepted once decompressed (a ``.csv.gz`` import); larger ones
        get 413 and nothing is stored. None: ``max_body_bytes``.
    rate_limit_per_minute
        Requests one contributor may send (API and pages together, counted after
        authentication), and requests one client address may send without signing in: that
        many a minute on average, in bursts of up to as many; more get 429 with
        ``Retry-After`` (:class:`~crowdtune.server.limits.RateLimits`).
    failed_auth_per_minute, failed_auth_burst
        Failed authentications (unknown token, session or sign-in) one client address may
        make: ``failed_auth_burst`` at once, then ``failed_auth_per_minute``; past that every
        request of the address gets 429 until its budget refills.
    sqlite_synchronous
        ``FULL`` (default: every acknowledged vote survives a power loss) or ``NORMAL`` (it
        survives the server being killed; the last commits may be lost with the power), for a
        SQLite database (see :data:`crowdtune.store.db.SQLITE_SYNCHRONOUS`). PostgreSQL
        connections always use ``synchronous_commit = on``.
    busy_timeout_ms
        How long a request waits for a database lock another connection holds; past it the
        request gets 503 with ``Retry-After`` (:func:`crowdtune.store.make_engine`).
    session_hours, session_idle_minutes
        A web page session (after signing in with a token) ends this many hours after sign-in,
        and after this many minutes unused (:class:`~crowdtune.store.repository.SessionPolicy`).
    clock
        The current UTC time, for session and token expiry (tests pass one they move).
    """
    # Bad settings fail here, before the server starts.
    url = normalize_url(DEFAULT_URL if db_url is None else db_url)
    sqlite_synchronous = sqlite_synchronous_mode(sqlite_synchronous)
    upload_limit = max_body_bytes if max_decompressed_bytes is None else max_decompressed_bytes
    if upload_limit < 1:
        raise ValueError(f"max_decompressed_bytes must be at least 1, got {upload_limit}")
    busy_timeout_ms = busy_timeout(busy_timeout_ms)
    limits = RateLimits(
        rate_limit_per_minute,
        failed_auth_per_minute=failed_auth_per_minute,
        failed_auth_burst=failed_auth_burst,
    )
    policy = SessionPolicy(
        max_age=timedelta(hours=session_hours), idle_timeout=timedelta(minutes=session_idle_minutes)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on AnyIO's worker threads (40 by default); each holds at most one
        # connection at a time, so a pool that size never makes a request wait for one.
        threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        pool = {} if in_memory(url) else {"pool_size": min(threads, 40), "max_overflow": 10}
        engine = make_engine(
            url, sqlite_synchronous=sqlite_synchronous, busy_timeout_ms=busy_timeout_ms, **pool
        )
        app.state.tokens = TokenCache()
        upgrade(engine)
        app.state.sessions = session_factory(engine)
        # Next-task assignments and answers: group commit (crowdtune.server.routes.tasks).
        app.state.writer = GroupCommit(engine)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(app.state.writer.close)
            engine.dispose()

    app = FastAPI(
        title="crowdtune",
        summary="Collect pairwise votes, revisions and ratings from a crowd.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.max_decompressed_bytes = upload_limit  # read by crowdtune.server.uploads
    app.state.rate_limits = limits
    # The CaR quality scorer behind the revision signals (loaded on first use, never fitted).
    app.state.quality_scorer = QualityScorer()
    # Each pairwise project's Dawid–Skene reliability, refitted only when its votes change.
    app.state.reliability_cache = FitCache()
    app.state.session_policy, app.state.clock = policy, clock
    # The last added runs first: an address over its budget is refused before its body is read,
    # and the input check sees only a body the size limit let through.
    app.add_middleware(InputCheck)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RateLimit, limits=limits, answer=error_answer)
    app.exception_handler(RateLimited)(rate_limited)
    app.exception_handler(RequestValidationError)(validation_error)

    app.exception_handler(StoreError)(store_error)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    # The web pages, their error pages and /static.
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.exception_handler(PageError)(page_error)
    app.exception_handler(SignInNeeded)(sign_in_needed)
    return app


#: The environment variable through which ``crowdtune serve --workers N`` hands the keyword
#: arguments of :func:`create_app` (JSON) to each worker process (:func:`app_from_environment`).
APP_CONFIG_ENV = "CROWDTUNE_APP_CONFIG"


def app_from_environment() -> FastAPI:
    """The app of one of ``crowdtune serve --workers N``'s processes: :func:`create_app` with
    the keyword arguments the parent wrote, as JSON, to :data:`APP_CONFIG_ENV` (uvicorn's app
    factory: each worker builds its own app, engine, writer and caches)."""
    try:
        config = json.loads(os.environ[APP_CONFIG_ENV])
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"{APP_CONFIG_ENV} must hold create_app's keyword arguments as JSON ({exc})"
        ) from None
    return create_app(**config)
