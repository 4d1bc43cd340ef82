"""Storage of crowd feedback: SQLAlchemy models, Alembic migrations and repository functions.

The store runs on SQLite (one file, the default ``sqlite:///./crowdtune.db``) or PostgreSQL
(``postgresql+psycopg://user@host/db``). It knows nothing about HTTP or business rules; the
server calls the plain functions of :mod:`crowdtune.store.repository`, each taking a SQLAlchemy
``Session``. Needs the ``server`` extra (SQLAlchemy, Alembic, psycopg).

>>> from crowdtune.store import make_engine, session_factory, upgrade
>>> from crowdtune.store.repository import create_contributor, contributor_by_token
>>> url = "sqlite://"  # in memory; a real deployment passes a file or PostgreSQL URL
>>> engine = make_engine(url)
>>> _ = upgrade(engine)
>>> with session_factory(engine)() as session:
...     alice, token = create_contributor(session, "alice", "annotator")
...     contributor_by_token(session, token).name
'alice'
"""

from crowdtune.store.db import (
    DEFAULT_URL,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from crowdtune.store.errors import (
    BusyError,
    ConflictError,
    CredentialError,
    ForbiddenError,
    NotFoundError,
    ReusedKeyError,
    StoreError,
)

__all__ = [
    "DEFAULT_URL",
    "BusyError",
    "ConflictError",
    "CredentialError",
    "ForbiddenError",
    "NotFoundError",
    "ReusedKeyError",
    "StoreError",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "normalize_url",
    "session_factory",
    "upgrade",
]
