"""``crowdtune db`` (the feedback store's schema) and ``crowdtune users`` (contributors and their
tokens: create, revoke, rotate); the helpers that open the store for every command that uses
it (``crowdtune projects``: :mod:`crowdtune.cli.projects`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from crowdtune.cli.common import fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

db_app = typer.Typer(help="The feedback store: create or migrate its database.")
users_app = typer.Typer(help="Contributors of the feedback store: admins and annotators.")

DbOpt = typer.Option(
    "sqlite:///./crowdtune.db",
    "--db",
    help="Database URL: sqlite:///FILE or postgresql+psycopg://user@host:5432/dbname.",
)


def upgrade_or_exit(url: str) -> str | None:
    """Migrate the database to the newest schema, or exit 2 naming what went wrong."""
    from sqlalchemy.exc import SQLAlchemyError

    from crowdtune.store import BusyError, normalize_url, upgrade

    try:
        shown = normalize_url(url).render_as_string(hide_password=True)
        return upgrade(url)
    except ValueError as exc:
        fail(str(exc))
    except (SQLAlchemyError, BusyError) as exc:
        # The driver's own message, without SQLAlchemy's link and statement.
        reason = str(getattr(exc, "orig", None) or exc).strip()
        fail(f"cannot open or migrate the database {shown}: {reason}")
    return None  # pragma: no cover (fail exits)


@db_app.command("upgrade")
def db_upgrade_cmd(db: str = DbOpt) -> None:
    """Create the database's tables or migrate them to the newest schema.

    Prints the revision the database is at.
    """
    typer.echo(upgrade_or_exit(db))


ExpiresOpt = typer.Option(
    None,
    "--expires-days",
    min=1,
    help="The token stops working this many days from now (default: it works until revoked "
    "or rotated).",
)
#: What the commands that end a token say about a server already running.
SERVER_NOTE = (
    "sign-in sessions end at once; a running server's API may accept the old token for up "
    "to {ttl:.0f} s more (its token cache)"
)


@contextmanager
def store_session(db: str) -> Iterator[Session]:
    """A session on the database (migrated first); a store error or bad value exits cleanly
    with its message."""
    from crowdtune.store import StoreError, session_factory

    engine = open_store(db)
    try:
        with session_factory(engine)() as session:
            yield session
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    finally:
        engine.dispose()


def _expiry(days: int | None) -> datetime | None:
    from crowdtune.store.models import utc_now

    return None if days is None else utc_now() + timedelta(days=days)


def _until(expires_at: datetime | None) -> str:
    return "" if expires_at is None else f", valid until {expires_at:%Y-%m-%d %H:%M} UTC"


def _server_note() -> str:
    from crowdtune.server.auth import TOKEN_TTL_SECONDS

    return SERVER_NOTE.format(ttl=TOKEN_TTL_SECONDS)


@users_app.command("create")
def users_create_cmd(
    name: str = typer.Option(..., "--name", help="Unique name of the contributor."),
    role: str = typer.Option("annotator", "--role", help="admin or annotator."),
    expires_days: int | None = ExpiresOpt,
    db: str = DbOpt,
) -> None:
    """Add a contributor and print its bearer token (shown only once).

    The token is alone on the last line.
    """
    from crowdtune.store.models import ROLES
    from crowdtune.store.repository import create_contributor, set_token_expiry

    if role not in ROLES:
        fail(f"unknown --role {role!r}; choose one of: {', '.join(ROLES)}")
    expires_at = _expiry(expires_days)
    with store_session(db) as session:
        contributor, token = create_contributor(session, name, role)
        if expires_at is not None:
            set_token_expiry(session, contributor.id, expires_at)
    typer.echo(
        f"created {contributor.role} {contributor.name!r} (id {contributor.id}); "
        f"token{_until(expires_at)}:"
    )
    typer.echo(token)


@users_app.command("revoke")
def users_revoke_cmd(
    name: str = typer.Option(..., "--name", help="Name of the contributor."),
    db: str = DbOpt,
) -> None:
    """Revoke a contributor's token and end all their sign-in sessions.

    The token is refused from then on (401, saying it was revoked) until `crowdtune users token
    --rotate` gives the contributor a new one. Sign-in sessions end at once; a server that is
    running may accept the token on its API for a few seconds more (its token cache).
    """
    from crowdtune.store import repository as repo

    with store_session(db) as session:
        contributor = repo.contributor_by_name(session, name)
        ended = repo.revoke_token(session, contributor.id)
    typer.echo(
        f"revoked the token of {contributor.role} {name!r} (id {contributor.id}) and ended "
        f"{ended} session(s); {_server_note()}"
    )


@users_app.command("token")
def users_token_cmd(
    name: str = typer.Option(..., "--name", help="Name of the contributor."),
    rotate: bool = typer.Option(
        False, "--rotate", help="Replace the token with a new one (printed once)."
    ),
    expires_days: int | None = ExpiresOpt,
    db: str = DbOpt,
) -> None:
    """Say whether a contributor's token works, or replace it (--rotate).

    Tokens are stored only as hashes, so none can be shown again. With --rotate a new token is
    made and printed, alone on the last line; the old one stops working, the contributor's
    sign-in sessions end, and a revocation is lifted. A server that is running may accept the
    old token on its API for a few seconds more (its token cache).
    """
    from crowdtune.store import repository as repo

    if expires_days is not None and not rotate:
        fail("--expires-days needs --rotate (a token's expiry is set when the token is made)")
    with store_session(db) as session:
        contributor = repo.contributor_by_name(session, name)
        who = f"{contributor.role} {name!r} (id {contributor.id})"
        if not rotate:
            problem = repo.token_refusal(contributor)
            typer.echo(
                f"{who}: {problem or 'the token works' + _until(contributor.token_expires_at)}"
            )
            return
        expires_at = _expiry(expires_days)
        token = repo.rotate_token(session, contributor.id, expires_at=expires_at)
    typer.echo(f"new token of {who}{_until(expires_at)}; the old one no longer works, "
               f"{_server_note()}:")  # fmt: skip
    typer.echo(token)


def open_store(db: str) -> Any:
    """An engine on the database, migrated to the newest schema first (or a clean exit)."""
    from crowdtune.store import make_engine

    upgrade_or_exit(db)
    return make_engine(db)
