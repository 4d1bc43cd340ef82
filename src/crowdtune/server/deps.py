"""Dependencies of the routes: the request's database session, the caller behind its bearer
token (:func:`authenticated`, then :func:`current_contributor`), and role aliases.

Routes name what they need in their signature: ``session: SessionDep`` (one SQLAlchemy session
per request), ``me: Annotator`` (an annotator or admin), ``admin: Admin`` (an admin only) or
``me: SignedIn`` (any contributor). A missing, unknown, revoked or expired token is 401, a role
that does not fit 403 (:func:`crowdtune.server.services.check_role`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from crowdtune.server.auth import Caller, TokenCache
from crowdtune.server.limits import count_contributor, count_failure
from crowdtune.server.services import check_role
from crowdtune.store import CredentialError
from crowdtune.store import repository as repo

bearer = HTTPBearer(auto_error=False, description="The token `crowdtune users create` printed.")


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


def _lookup(factory: sessionmaker[Session], token: str, now: datetime) -> Caller:
    with factory() as session:
        contributor = repo.authenticate(session, token, now=now)
        return Caller(
            contributor.id, contributor.name, contributor.role, contributor.token_expires_at
        )


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The contributor whose bearer token came with the request; 401 when it is missing,
    unknown, revoked or expired (the message says which). Tokens accepted in the last
    :data:`~crowdtune.server.auth.TOKEN_TTL_SECONDS` are checked without the database (but
    against their expiry): a request whose caller is cached opens no database session. The
    others look the token up on a worker thread, off the event loop."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    cache: TokenCache = request.app.state.tokens
    now: datetime = request.app.state.clock()
    token_hash = repo.hash_token(credentials.credentials)
    caller = cache.get(token_hash)
    if caller is not None and (caller.expires_at is None or now < caller.expires_at):
        return caller
    generation = cache.generation
    try:
        caller = await run_in_threadpool(
            _lookup, request.app.state.sessions, credentials.credentials, now
        )
    except CredentialError as exc:
        count_failure(request, credentials.credentials)
        raise HTTPException(401, str(exc), challenge) from None
    cache.put(token_hash, caller, generation=generation)
    return caller


async def current_contributor(
    request: Request, caller: Annotated[Caller, Depends(authenticated)]
) -> Caller:
    """The authenticated contributor of a request (:func:`authenticated`). What is checked per
    contributor rather than per request (a limit keyed on ``caller.id``) goes here, after
    authentication, so that no spelling of a header or bogus token counts as someone new."""
    count_contributor(request, caller.id)
    return caller


def require_role(*roles: str) -> Any:
    """A dependency giving the signed-in contributor if their role is one of ``roles``; 403.

    It calls :func:`authenticated` and :func:`current_contributor` itself rather than
    depending on them: FastAPI solves each level of dependencies at a cost, and on the vote
    path these levels were a tenth of a request's work."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = await current_contributor(request, await authenticated(request, credentials))
        check_role(caller.role, roles)
        return caller

    return Depends(check)


Admin = Annotated[Caller, require_role("admin")]
Annotator = Annotated[Caller, require_role("annotator", "admin")]
SignedIn = Annotated[Caller, Depends(current_contributor)]
