"""The FastAPI app: routes under ``/api/v1``, bearer-token auth, roles, limits, error mapping.

Every route needs ``Authorization: Bearer <token>`` (401 without one or with an unknown one) and
checks the caller's role (403). Store errors map to statuses: :class:`NotFoundError` 404,
:class:`ForbiddenError` 403, :class:`ConflictError` 409; malformed input is 422 naming the field
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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Response as HTTPResponse
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import UploadFile

from crowdtune.datasets.comparisons import write_arena_csv, write_jsonl, write_trl_jsonl
from crowdtune.datasets.home import DatasetFormatError
from crowdtune.records import comparisons_frame, join_turns
from crowdtune.server.limits import BodySizeLimit, RateLimit
from crowdtune.server.schemas import (
    Created,
    ItemIn,
    ItemsCreated,
    LeaderboardOut,
    ProjectIn,
    ResponseIn,
    ResponseOut,
    StatsOut,
    TaskItem,
    TaskOut,
    VerdictCode,
)
from crowdtune.server.scoring import contributor_breakdown
from crowdtune.store import (
    DEFAULT_URL,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    StoreError,
    make_engine,
    session_factory,
    upgrade,
)
from crowdtune.store import repository as repo
from crowdtune.store.models import VERDICT_CODES, Contributor
from crowdtune.tables import jsonable

API_PREFIX = "/api/v1"
#: Bootstrap resamples behind the agreement intervals of ``/stats``.
STATS_BOOTSTRAP = 200
_STATUS = {NotFoundError: 404, ForbiddenError: 403, ConflictError: 409}
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


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, closed (and any open transaction rolled back) afterwards."""
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_contributor(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Contributor:
    """The contributor whose bearer token came with the request; 401 otherwise."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    contributor = repo.contributor_by_token(session, credentials.credentials)
    if contributor is None:
        raise HTTPException(401, "unknown bearer token", challenge)
    return contributor


def require_role(*roles: str) -> Any:
    """A dependency giving the signed-in contributor if their role is one of ``roles``; 403."""

    def check(contributor: Annotated[Contributor, Depends(current_contributor)]) -> Contributor:
        if contributor.role not in roles:
            raise HTTPException(
                403, f"this needs the role {' or '.join(roles)}; you are {contributor.role}"
            )
        return contributor

    return Depends(check)


Admin = Annotated[Contributor, require_role("admin")]
Annotator = Annotated[Contributor, require_role("annotator", "admin")]
SignedIn = Annotated[Contributor, Depends(current_contributor)]


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
    return [
        {
            "prompt": list(c.prompt),
            "response_a": list(c.response_a),
            "response_b": list(c.response_b),
            "model_a": c.model_a,
            "model_b": c.model_b,
            "gold": c.verdict if gold else None,
            "id": c.id,
        }
        for c in comparisons
    ]


# ---------------------------------------------------------------------------------------------
# the app


def create_app(
    db_url: str | None = None,
    *,
    max_body_bytes: int = 1_000_000,
    rate_limit_per_minute: int = 600,
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
    """
    url = DEFAULT_URL if db_url is None else db_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(url)
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
        project_id: int,
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
    def next_task(project_id: int, session: SessionDep, me: Annotator) -> Any:
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
        task_id: int,
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
        project_id: int,
        session: SessionDep,
        admin: Admin,
        format: Annotated[Literal["arena-csv", "jsonl", "trl"], Query()] = "jsonl",
        ties: Annotated[Literal["drop", "keep"], Query(description="trl only")] = "drop",
    ) -> HTTPResponse:
        """Download every vote: an arena CSV, crowdtune JSONL (one line per vote), or TRL
        preference JSONL (ties dropped unless ``ties=keep``)."""
        return export_download(session, project_id, format, ties)

    @app.get(f"{API_PREFIX}/projects/{{project_id}}/stats", response_model=StatsOut, tags=["admin"])
    def stats(project_id: int, session: SessionDep, admin: Admin) -> StatsOut:
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
    def leaderboard(project_id: int, session: SessionDep, me: SignedIn) -> dict[str, Any]:
        """Per contributor: votes, gold items answered and accuracy on them, and agreement with
        the majority of the other voters on shared items. Credit is null until rounds run."""
        votes = repo.project_votes(session, project_id)
        return {
            "project_id": project_id,
            "contributors": contributor_breakdown(votes),
            "credit_note": "Shapley points come from Crowd-SFT rounds; none have run yet.",
        }
