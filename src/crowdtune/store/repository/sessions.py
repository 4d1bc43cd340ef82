"""Repository sessions and tokens: sign-in sessions kept apart from API tokens, and revoking,
rotating and expiring tokens.

Signing in with a bearer token (:func:`start_session`) makes a session with a random id
(``secrets.token_urlsafe(32)``), returned once for the browser's cookie; the store keeps only
its SHA-256 (the ``session`` table, :class:`~crowdtune.store.models.WebSession`). A session
ends at its absolute expiry (:attr:`SessionPolicy.max_age` after sign-in, or sooner when its
token expires), after :attr:`SessionPolicy.idle_timeout` unused, at sign-out
(:func:`end_session` deletes it), and when its contributor's token is revoked or rotated.

A token works until it is revoked (:func:`revoke_token`), replaced (:func:`rotate_token`) or
its expiry passes (:func:`set_token_expiry`); :func:`authenticate` says which of these refused
it. Writers commit before they return, like those of
:mod:`~crowdtune.store.repository.writes`. Every function that looks at the time takes
``now`` (default: the current UTC time), so a test moves a clock instead of sleeping.

Whoever remembers tokens in memory (the server's token cache) registers with
:func:`on_token_change`: after a revocation, rotation or new expiry commits, its
``forget_contributor(contributor_id)`` is called, in this process. Another process learns of
the change only when it next reads the contributor from the database.
"""

from __future__ import annotations

import secrets
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from crowdtune.store.errors import CredentialError, NotFoundError
from crowdtune.store.models import Contributor, UTCDateTime, WebSession, as_utc, utc_now
from crowdtune.store.repository.reads import contributor_by_token, hash_token
from crowdtune.store.repository.writes import writing

#: How long a session lasts at most after sign-in, and unused.
SESSION_MAX_AGE = timedelta(hours=12)
SESSION_IDLE_TIMEOUT = timedelta(hours=1)
#: A session's ``last_seen_at`` is rewritten at most this often (or every tenth of the idle
#: timeout, if that is shorter), so most page views only read.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionPolicy:
    """How long a sign-in session lasts: until ``max_age`` after sign-in, and until it has gone
    unused for ``idle_timeout``.

    >>> SessionPolicy(max_age=timedelta(hours=8)).idle_timeout
    datetime.timedelta(seconds=3600)
    >>> SessionPolicy(idle_timeout=timedelta(0))
    Traceback (most recent call last):
    ...
    ValueError: idle_timeout must be a positive duration, got datetime.timedelta(0)
    """

    max_age: timedelta = SESSION_MAX_AGE
    idle_timeout: timedelta = SESSION_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("max_age", "idle_timeout"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration, got {value!r}")

    @property
    def touch_every(self) -> timedelta:
        """How old ``last_seen_at`` may get before a request rewrites it. A session can so end
        up to this much before its idle timeout, never after it."""
        return min(TOUCH_EVERY, self.idle_timeout / 10)


class TokenListener(Protocol):
    """What :func:`on_token_change` calls: forget what is remembered of a contributor's token."""

    def forget_contributor(self, contributor_id: int) -> None: ...


_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def on_token_change(listener: TokenListener) -> None:
    """Call ``listener.forget_contributor(id)`` each time this process revokes, rotates or sets
    the expiry of a contributor's token, once the change is committed. The listener is held
    weakly: once nothing else refers to it, it is dropped."""
    _listeners.add(listener)


def _announce(contributor_id: int) -> None:
    for listener in list(_listeners):
        listener.forget_contributor(contributor_id)


def _now(now: datetime | None) -> datetime:
    return utc_now() if now is None else as_utc(now)


def _shown(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def token_refusal(contributor: Contributor, now: datetime | None = None) -> str | None:
    """Why ``contributor``'s token does not work at ``now`` (revoked or expired); None when it
    does."""
    renew = "ask an admin for a new one (crowdtune users token --rotate)"
    if contributor.token_revoked_at is not None:
        return f"this token was revoked on {_shown(contributor.token_revoked_at)}; {renew}"
    expires = contributor.token_expires_at
    if expires is not None and _now(now) >= expires:
        return f"this token expired on {_shown(expires)}; {renew}"
    return None


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> Contributor:
    """The contributor whose bearer token this is, if the token works at ``now``.

    Raises
    ------
    CredentialError
        The token is unknown, revoked or expired (the message says which).
    """
    contributor = contributor_by_token(session, token)
    if contributor is None:
        raise CredentialError("unknown token")
    problem = token_refusal(contributor, now)
    if problem is not None:
        raise CredentialError(problem)
    return contributor


def start_session(
    session: Session, token: str, *, policy: SessionPolicy, now: datetime | None = None
) -> tuple[Contributor, str]:
    """Sign in with a bearer token: its contributor and the id of their new session, for the
    cookie (returned once; only its SHA-256 is stored). Sessions of anyone that have ended are
    deleted on the way. Commits.

    Raises
    ------
    CredentialError
        As :func:`authenticate`.
    """
    now = _now(now)
    contributor = authenticate(session, token, now=now)
    session_id = secrets.token_urlsafe(32)
    expires = now + policy.max_age
    if contributor.token_expires_at is not None:
        expires = min(expires, contributor.token_expires_at)
    with writing(session):
        ended = or_(
            WebSession.expires_at <= now, WebSession.last_seen_at <= now - policy.idle_timeout
        )
        session.execute(delete(WebSession).where(ended))
        session.add(
            WebSession(
                contributor_id=contributor.id,
                id_hash=hash_token(session_id),
                created_at=now,
                last_seen_at=now,
                expires_at=expires,
            )
        )
        session.commit()
    return contributor, session_id


def session_contributor(
    session: Session, session_id: str, *, policy: SessionPolicy, now: datetime | None = None
) -> Contributor:
    """The contributor signed in with ``session_id``, if the session is live at ``now``.

    Marks the session used: when its ``last_seen_at`` is older than
    :attr:`SessionPolicy.touch_every` it is set to ``now`` and committed; otherwise this only
    reads, and leaves the transaction open.

    Raises
    ------
    CredentialError
        There is no such session (never was, or signed out), it has ended (absolute expiry or
        idle timeout), or its token no longer works.
    """
    now = _now(now)
    row = (
        session.execute(
            select(WebSession, Contributor)
            .join(Contributor, WebSession.contributor_id == Contributor.id)
            .where(WebSession.id_hash == hash_token(session_id))
        ).first()
        if session_id
        else None
    )
    if row is None:
        raise CredentialError("no such session; sign in")
    web, contributor = row
    if now >= web.expires_at:
        raise CredentialError("the session expired; sign in again")
    if now - web.last_seen_at >= policy.idle_timeout:
        raise CredentialError("the session ended after going unused; sign in again")
    problem = token_refusal(contributor, now)
    if problem is not None:
        raise CredentialError(problem)
    if now - web.last_seen_at >= policy.touch_every:
        with writing(session):
            session.execute(
                update(WebSession).where(WebSession.id == web.id).values(last_seen_at=now)
            )
            session.commit()
    return contributor


def _deleted(session: Session, statement: Any) -> int:
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount)


def end_session(session: Session, session_id: str) -> bool:
    """Sign out: delete the session, so its id and CSRF token stop working. Whether there was
    one. Commits."""
    with writing(session):
        ended = _deleted(
            session, delete(WebSession).where(WebSession.id_hash == hash_token(session_id))
        )
        session.commit()
    return ended > 0


def _change_token(session: Session, contributor_id: int, values: dict[str, Any]) -> int:
    """Set ``values`` on a contributor and end all their sessions, in one transaction; the
    number of sessions ended. Commits, then tells the listeners."""
    with writing(session):
        changed = _deleted(
            session, update(Contributor).where(Contributor.id == contributor_id).values(**values)
        )
        if changed == 0:
            raise NotFoundError(f"no contributor with id {contributor_id}")
        ended = _deleted(
            session, delete(WebSession).where(WebSession.contributor_id == contributor_id)
        )
        session.commit()
    _announce(contributor_id)
    return ended


def revoke_token(session: Session, contributor_id: int, *, now: datetime | None = None) -> int:
    """Revoke a contributor's token and end all their sessions; the number of sessions ended.

    The token is then refused (401, saying it was revoked) until :func:`rotate_token` gives the
    contributor a new one; revoking twice keeps the first date. Commits.

    Raises
    ------
    NotFoundError
        There is no contributor with this id.
    """
    revoked = func.coalesce(Contributor.token_revoked_at, literal(_now(now), UTCDateTime()))
    return _change_token(session, contributor_id, {"token_revoked_at": revoked})


def _future(expires_at: datetime | None, now: datetime | None) -> datetime | None:
    if expires_at is not None and as_utc(expires_at) <= _now(now):
        raise ValueError(
            f"a token's expiry must be in the future, got {_shown(as_utc(expires_at))}"
        )
    return None if expires_at is None else as_utc(expires_at)


def rotate_token(
    session: Session,
    contributor_id: int,
    *,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """Give a contributor a new token, returned once (only its SHA-256 is stored), that works
    until ``expires_at`` (None: until revoked). The old token stops working, a revocation is
    lifted and all the contributor's sessions end. Commits.

    Raises
    ------
    ValueError
        ``expires_at`` is not after ``now``.
    NotFoundError
        There is no contributor with this id.
    """
    values = {"token_expires_at": _future(expires_at, now), "token_revoked_at": None}
    token = secrets.token_urlsafe(32)
    _change_token(session, contributor_id, {**values, "token_hash": hash_token(token)})
    return token


def set_token_expiry(
    session: Session,
    contributor_id: int,
    expires_at: datetime | None,
    *,
    now: datetime | None = None,
) -> None:
    """Make a contributor's token stop working at ``expires_at`` (None: never), keeping the
    token; their sessions end too (they sign in again, and their new sessions end by then).
    Commits.

    Raises
    ------
    ValueError
        ``expires_at`` is not after ``now``.
    NotFoundError
        There is no contributor with this id.
    """
    _change_token(session, contributor_id, {"token_expires_at": _future(expires_at, now)})
