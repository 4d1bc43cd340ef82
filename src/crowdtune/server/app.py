"""The FastAPI app: routes under ``/api/v1``, bearer-token auth, roles, limits, error mapping.

Every route needs ``Authorization: Bearer <token>`` (401 without one or with an unknown one) and
checks the caller's role (403). Store errors map to statuses: :class:`NotFoundError` 404,
:class:`ForbiddenError` 403, :class:`ConflictError` 409, :class:`BusyError` (the database
stayed locked) 503; malformed input is 422 naming the field
(or, for a CSV upload, the row and column). Every error body is ``{"detail": ...}``. Each
request gets one SQLAlchemy session; writes are committed by the repository before the route
answers, so an acknowledged vote is stored.

Idempotent votes: ``POST /api/v1/tasks/{task_id}/responses`` with an ``Idempotency-Key`` header
answers **201** when it stores the vote and **200** with the same body (and the header
``Idempotent-Replayed: true``) when the key was seen before, storing nothing.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Response as HTTPResponse
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from crowdtune.datasets.comparisons import write_arena_csv, write_jsonl, write_trl_jsonl
from crowdtune.datasets.home import DatasetFormatError
from crowdtune.records import comparisons_frame, join_turns
from crowdtune.server.auth import Caller, TokenCache
from crowdtune.server.limits import BodySizeLimit, RateLimit
from crowdtune.server.schemas import (
    Created,
    ItemIn,
    ItemsCreated,
    LeaderboardOut,
    ProjectIn,
    ResponseIn,
    ResponseOut,
    RoundIn,
    RoundOut,
    RowId,
    StatsOut,
    TaskItem,
    TaskOut,
    VerdictCode,
)
from crowdtune.server.scoring import contributor_breakdown
from crowdtune.store import (
    DEFAULT_URL,
    BusyError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    StoreError,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from crowdtune.store import repository as repo
from crowdtune.store.db import in_memory, sqlite_synchronous_mode
from crowdtune.store.models import VERDICT_CODES
from crowdtune.tables import jsonable

API_PREFIX = "/api/v1"
#: Bootstrap resamples behind the agreement intervals of ``/stats``.
STATS_BOOTSTRAP = 200
_STATUS = {NotFoundError: 404, ForbiddenError: 403, ConflictError: 409, BusyError: 503}
_ITEMS = TypeAdapter(list[ItemIn])
_EXPORTS = {
    # format: (file suffix, media type)
    "arena-csv": (".csv", "text/csv; charset=utf-8"),
    "jsonl": (".jsonl", "application/x-ndjson"),
    "trl": ("-trl.jsonl", "application/x-ndjson"),
}

bearer = HTTPBearer(auto_error=False, description="The token `crowdtune users create` printed.")


# ---------------------------------------------------------------------------------------------
# dependencies


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request. Creating it touches no database, and routes commit what they
    do, so closing it seldom does: only a session with a transaction still open is closed (its
    transaction rolled back) on a worker thread, off the event loop."""
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _lookup(session: Session, token: str) -> Caller | None:
    contributor = repo.contributor_by_token(session, token)
    # End the read: the connection goes back to the pool while the request waits for the route.
    session.commit()
    if contributor is None:
        return None
    return Caller(contributor.id, contributor.name, contributor.role)


async def current_contributor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The contributor whose bearer token came with the request; 401 otherwise. Tokens seen
    in the last :data:`~crowdtune.server.auth.TOKEN_TTL_SECONDS` are checked without the
    database."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    cache: TokenCache = request.app.state.tokens
    token_hash = repo.hash_token(credentials.credentials)
    caller = cache.get(token_hash)
    if caller is None:
        caller = await run_in_threadpool(_lookup, session, credentials.credentials)
        if caller is None:
            raise HTTPException(401, "unknown bearer token", challenge)
        cache.put(token_hash, caller)
    return caller


def require_role(*roles: str) -> Any:
    """A dependency giving the signed-in contributor if their role is one of ``roles``; 403."""

    async def check(caller: Annotated[Caller, Depends(current_contributor)]) -> Caller:
        if caller.role not in roles:
            raise HTTPException(
                403, f"this needs the role {' or '.join(roles)}; you are {caller.role}"
            )
        return caller

    return Depends(check)


Admin = Annotated[Caller, require_role("admin")]
Annotator = Annotated[Caller, require_role("annotator", "admin")]
SignedIn = Annotated[Caller, Depends(current_contributor)]


def export_download(
    session: Session, project_id: int, format: str, ties: Literal["drop", "keep"] = "drop"
) -> HTTPResponse:
    """Every vote of a project as a download: arena CSV, crowdtune JSONL (one line per vote) or
    TRL preference JSONL (the API route and the admin page share it)."""
    project = repo.get_project(session, project_id)
    comparisons = repo.project_comparisons(session, project_id)
    suffix, media_type = _EXPORTS[format]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"export{suffix}"
        if format == "arena-csv":
            write_arena_csv(comparisons, path)
        elif format == "jsonl":
            write_jsonl(comparisons, path)
        else:
            write_trl_jsonl(comparisons, path, ties)
        content = path.read_bytes()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-.") or "project"
    return HTTPResponse(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{slug}-votes{suffix}"'},
    )


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(422, message)


async def item_payload(request: Request) -> list[dict[str, Any]]:
    """The items of an import: a JSON list of :class:`ItemIn`, or a multipart arena CSV
    (field ``file``) whose winner columns become gold answers with ``?gold=true``."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _csv_items(request, request.query_params.get("gold", "false") == "true")
    try:
        raw = await request.json()
    except ValueError:
        raise _unprocessable(
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


async def _csv_items(request: Request, gold: bool) -> list[dict[str, Any]]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _unprocessable("multipart upload needs the arena CSV in the field 'file'")
    name = Path(upload.filename or "upload.csv").name
    data = await upload.read()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("upload.csv.gz" if name.endswith(".gz") else "upload.csv")
        path.write_bytes(data)
        from crowdtune.datasets.comparisons import read_arena_csv

        try:
            comparisons = read_arena_csv(path)
        except DatasetFormatError as exc:
            where = (f", data row {exc.row}" if exc.row is not None else "") + (
                f", column {exc.column!r}" if exc.column else ""
            )
            raise _unprocessable(f"{name}{where}: {exc.problem}") from None
    return [repo.comparison_item(c, gold) for c in comparisons]


# ---------------------------------------------------------------------------------------------
# the app


def create_app(
    db_url: str | None = None,
    *,
    max_body_bytes: int = 1_000_000,
    rate_limit_per_minute: int = 600,
    sqlite_synchronous: str = "NORMAL",
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
    """
    # Bad settings fail here, before the server starts.
    url = normalize_url(DEFAULT_URL if db_url is None else db_url)
    sqlite_synchronous = sqlite_synchronous_mode(sqlite_synchronous)

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
        description=__doc__ or "",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RateLimit, per_minute=rate_limit_per_minute, prefix=API_PREFIX + "/")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    _routes(app)
    from crowdtune.server.pages import install as install_pages  # imports this module

    install_pages(app)  # web pages, their error pages and /static
    return app


def _routes(app: FastAPI) -> None:  # noqa: C901 (one closure per route)
    @app.post(f"{API_PREFIX}/projects", status_code=201, response_model=Created, tags=["admin"])
    def create_project(body: ProjectIn, session: SessionDep, admin: Admin) -> Created:
        """Create a project whose items each go to ``overlap`` distinct annotators; 409 when
        the name is taken."""
        try:
            project = repo.create_project(session, body.name, body.overlap, body.kind)
        except ValueError as exc:
            raise _unprocessable(str(exc)) from None
        return Created(id=project.id)

    @app.post(
        f"{API_PREFIX}/projects/{{project_id}}/items",
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
            raise _unprocessable(str(exc)) from None
        return ItemsCreated(created=len(created))

    @app.get(
        f"{API_PREFIX}/projects/{{project_id}}/tasks/next",
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
                response_b=join_turns(item.response_b),
            ),
        )

    @app.post(
        f"{API_PREFIX}/tasks/{{task_id}}/responses",
        status_code=201,
        response_model=ResponseOut,
        responses={200: {"description": "A retry with a known Idempotency-Key; nothing stored."}},
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
        reply: 201. The same ``Idempotency-Key`` again returns the same body with 200 and stores
        nothing; answering an answered task under another key is 409."""
        try:
            stored, created = repo.submit_response(
                session, task_id, me.id, body.verdict, body.reason, body.seconds, idempotency_key
            )
        except ValueError as exc:
            raise _unprocessable(str(exc)) from None
        if not created:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return ResponseOut(
            response_id=stored.id,
            task_id=stored.task_id,
            verdict=cast(VerdictCode, VERDICT_CODES[stored.verdict]),
        )

    @app.get(
        f"{API_PREFIX}/projects/{{project_id}}/export",
        response_class=HTTPResponse,
        responses={200: {"content": {m: {} for _, m in _EXPORTS.values()}}},
        tags=["admin"],
    )
    def export(
        project_id: RowId,
        session: SessionDep,
        admin: Admin,
        format: Annotated[Literal["arena-csv", "jsonl", "trl"], Query()] = "jsonl",
        ties: Annotated[Literal["drop", "keep"], Query(description="trl only")] = "drop",
    ) -> HTTPResponse:
        """Download every vote: an arena CSV, crowdtune JSONL (one line per vote), or TRL
        preference JSONL (ties dropped unless ``ties=keep``)."""
        return export_download(session, project_id, format, ties)

    @app.get(f"{API_PREFIX}/projects/{{project_id}}/stats", response_model=StatsOut, tags=["admin"])
    def stats(project_id: RowId, session: SessionDep, admin: Admin) -> StatsOut:
        """Progress counts, and inter-annotator agreement once two annotators share an item
        (otherwise ``agreement`` is null and ``agreement_reason`` says why)."""
        from crowdtune.preference.agreement import agreement

        counts = repo.progress(session, project_id).to_dict()
        comparisons = repo.project_comparisons(session, project_id)
        try:
            result = agreement(comparisons_frame(comparisons), n_bootstrap=STATS_BOOTSTRAP)
        except ValueError as exc:
            reason = "no votes yet" if not comparisons else str(exc)
            return StatsOut(progress=counts, agreement=None, agreement_reason=reason)
        return StatsOut(progress=counts, agreement=jsonable(result.to_dict()))

    @app.get(
        f"{API_PREFIX}/projects/{{project_id}}/leaderboard",
        response_model=LeaderboardOut,
        tags=["annotate"],
    )
    def leaderboard(project_id: RowId, session: SessionDep, me: SignedIn) -> dict[str, Any]:
        """Per contributor: votes, gold items answered and accuracy on them, agreement with
        the majority of the other voters on shared items, and credit: points summed over the
        project's Crowd-SFT rounds (null before any; ``credit_note`` says how they were earned)."""
        from crowdtune.server.rounds import project_credit

        votes = repo.project_votes(session, project_id)
        credit, note = project_credit(session, project_id)
        return {
            "project_id": project_id,
            "contributors": contributor_breakdown(votes, credit),
            "credit_note": note,
        }

    @app.post(
        f"{API_PREFIX}/projects/{{project_id}}/rounds",
        status_code=201,
        response_model=RoundOut,
        tags=["admin"],
    )
    def run_round(
        project_id: RowId, body: RoundIn, session: SessionDep, admin: Admin
    ) -> dict[str, Any]:
        """Run one Crowd-SFT round on the feedback collected so far: contributors are grouped
        by ``strategy``, each group's votes outside the gold items train a candidate preference
        model, candidates are scored on the gold items (log loss), the winner is recorded and
        points are paid by ``scheme``. 422 when the round cannot run (no gold items, fewer
        contributors than ``n_groups``, no group with enough votes), saying why."""
        from crowdtune.crowd.feedback.round import RoundSettings
        from crowdtune.server.rounds import round_out, run_project_round

        try:
            stored = run_project_round(session, project_id, RoundSettings(**body.model_dump()))
        except ValueError as exc:
            raise _unprocessable(str(exc)) from None
        return round_out(stored)

    @app.get(
        f"{API_PREFIX}/projects/{{project_id}}/rounds",
        response_model=list[RoundOut],
        tags=["admin"],
    )
    def list_rounds(project_id: RowId, session: SessionDep, admin: Admin) -> list[dict[str, Any]]:
        """Every Crowd-SFT round of the project, oldest first."""
        from crowdtune.server.rounds import round_out

        return [round_out(stored) for stored in repo.project_rounds(session, project_id)]
