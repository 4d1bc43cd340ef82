"""Alembic's entry point: runs the migrations on the connection :func:`crowdtune.store.upgrade`
passes in, or on an engine for the configured URL (``alembic -x`` style use from a checkout)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from crowdtune.store.db import make_engine
from crowdtune.store.models import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _under_alembic() -> bool:
    try:
        context.config  # noqa: B018  (set only while Alembic runs this file)
    except AttributeError:  # imported by pytest --doctest-modules or mypy: nothing to run
        return False
    return True


if _under_alembic():
    if context.is_offline_mode():
        raise RuntimeError("crowdtune migrations run online only; use crowdtune.store.upgrade")
    run_migrations()
