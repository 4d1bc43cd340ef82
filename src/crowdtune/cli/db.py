"""``crowdtune db`` (the feedback store's schema) and ``crowdtune users`` (contributors)."""

from __future__ import annotations

from typing import Any

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


@users_app.command("create")
def users_create_cmd(
    name: str = typer.Option(..., "--name", help="Unique name of the contributor."),
    role: str = typer.Option("annotator", "--role", help="admin or annotator."),
    db: str = DbOpt,
) -> None:
    """Add a contributor and print its bearer token (shown only once).

    The token is alone on the last line.
    """
    from crowdtune.store import ConflictError, session_factory
    from crowdtune.store.models import ROLES
    from crowdtune.store.repository import create_contributor

    if role not in ROLES:
        fail(f"unknown --role {role!r}; choose one of: {', '.join(ROLES)}")
    engine = open_store(db)
    try:
        with session_factory(engine)() as session:
            contributor, token = create_contributor(session, name, role)
    except (ConflictError, ValueError) as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"created {contributor.role} {contributor.name!r} (id {contributor.id}); token:")
    typer.echo(token)


projects_app = typer.Typer(help="Feedback projects: create them and import items to compare.")


def open_store(db: str) -> Any:
    """An engine on the database, migrated to the newest schema first (or a clean exit)."""
    from crowdtune.store import make_engine

    upgrade_or_exit(db)
    return make_engine(db)


def load_items(data: str, limit: int | None, gold_share: float, seed: int) -> list[dict[str, Any]]:
    """The first ``limit`` comparisons of ``data`` as items; a random ``gold_share`` of them
    keep their verdict as gold. Exits cleanly naming the bad option or source."""
    from crowdtune.cli.preference import load_records
    from crowdtune.store.repository import comparison_items

    if not 0 <= gold_share <= 1:
        fail(f"--gold-share must be between 0 and 1, got {gold_share}")
    records = load_records([data], seed=seed)[:limit]
    return comparison_items(records, gold_share=gold_share, seed=seed)


@projects_app.command("create")
def projects_create_cmd(
    name: str = typer.Option(..., "--name", help="Unique name of the project."),
    overlap: int = typer.Option(3, "--overlap", help="Distinct annotators per item (k)."),
    db: str = DbOpt,
) -> None:
    """Create a pairwise project; prints its id."""
    from crowdtune.store import ConflictError, session_factory
    from crowdtune.store.repository import create_project

    engine = open_store(db)
    try:
        with session_factory(engine)() as session:
            project = create_project(session, name, overlap=overlap)
    except (ConflictError, ValueError) as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"created project {project.name!r} (id {project.id}, overlap {project.overlap})")


@projects_app.command("import")
def projects_import_cmd(
    project: str = typer.Option(..., "--project", help="Name of an existing project."),
    data: str = typer.Option(
        ..., "--data", help="@pandalm, @llmeval2, @mt-bench, @hh-rlhf, @car, an arena CSV or JSONL."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Import only the first N items."),
    gold_share: float = typer.Option(
        0.0,
        "--gold-share",
        help="Share of items (chosen at random) whose known verdict is kept as a gold answer, "
        "for quality checks and for scoring the candidates of Crowd-SFT rounds.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the gold choice and A/B order."),
    db: str = DbOpt,
) -> None:
    """Import comparisons as items to annotate.

    Reads --data (a dataset of the data home or a file) and stores all of its items or, on an
    error, none.
    """
    from crowdtune.store import ConflictError, NotFoundError, session_factory
    from crowdtune.store import repository as repo

    items = load_items(data, limit, gold_share, seed)
    engine = open_store(db)
    try:
        with session_factory(engine)() as session:
            target = repo.project_by_name(session, project)
            repo.add_items(session, target.id, items)
    except (ConflictError, NotFoundError, ValueError) as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    n_gold = sum(item["gold"] is not None for item in items)
    typer.echo(f"imported {len(items)} items ({n_gold} with gold answers) into project {target.id}")
