"""``crowdtune db`` (the feedback store's schema) and ``crowdtune users`` (contributors)."""

from __future__ import annotations

import typer

from crowdtune.cli.common import fail

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

    from crowdtune.store import normalize_url, upgrade

    try:
        shown = normalize_url(url).render_as_string(hide_password=True)
        return upgrade(url)
    except ValueError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        # The driver's own message, without SQLAlchemy's link and statement.
        reason = str(getattr(exc, "orig", None) or exc).strip()
        fail(f"cannot open or migrate the database {shown}: {reason}")
    return None  # pragma: no cover (fail exits)


@db_app.command("upgrade")
def db_upgrade_cmd(db: str = DbOpt) -> None:
    """Create the database's tables or migrate them to the newest schema; prints the revision."""
    typer.echo(upgrade_or_exit(db))


@users_app.command("create")
def users_create_cmd(
    name: str = typer.Option(..., "--name", help="Unique name of the contributor."),
    role: str = typer.Option("annotator", "--role", help="admin or annotator."),
    db: str = DbOpt,
) -> None:
    """Add a contributor; prints its bearer token alone on the last line (shown only once)."""
    from crowdtune.store import ConflictError, make_engine, session_factory
    from crowdtune.store.models import ROLES
    from crowdtune.store.repository import create_contributor

    if role not in ROLES:
        fail(f"unknown --role {role!r}; choose one of: {', '.join(ROLES)}")
    upgrade_or_exit(db)
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            contributor, token = create_contributor(session, name, role)
    except (ConflictError, ValueError) as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"created {contributor.role} {contributor.name!r} (id {contributor.id}); token:")
    typer.echo(token)
