"""Repository writes: the write transaction every writer runs in (:func:`writing`),
contributors, projects and Crowd-SFT rounds (items: :mod:`.items`; answers: :mod:`.answers`).

Each writer commits any transaction already open on the session, runs its own (inside
:func:`writing`) and **commits** it before it returns, so a caller never acknowledges what is
not stored; on an error it rolls back and raises one of :mod:`crowdtune.store.errors` (or
``ValueError`` for malformed input), leaving nothing half written.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crowdtune.store.db import SQLITE_BEGIN, write_lock
from crowdtune.store.errors import ConflictError
from crowdtune.store.models import (
    ASSIGNMENT_ORDERS,
    PROJECT_KINDS,
    ROLES,
    Contributor,
    Project,
    Round,
)
from crowdtune.store.repository.reads import get_project, hash_token, project_round_count
from crowdtune.validation import check_choice, check_text

#: Longest contributor name, project name, external id, model name and idempotency key.
MAX_NAME = 100
MAX_LABEL = 200
#: Longest model name or path.
MAX_PATH = 500

#: A row of a Core query on the hot path (its columns vary by query, so typed loosely).
CoreRow = Any

#: The scale of a rating project when none is given (a 7-point Likert scale).
DEFAULT_RATING_SCALE = (1, 7)


def check_name(value: str, what: str, limit: int) -> str:
    """``value`` stripped, or ``ValueError`` naming ``what``: empty, longer than ``limit``, or
    holding a NUL or a lone surrogate."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    value = check_text(value.strip(), what)
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters, got {len(value)}")
    return value


@contextmanager
def writing(session: Session) -> Iterator[None]:
    """Commit the session's open transaction, begin one that will write, and roll it back if
    the block raises (so an error never leaves a transaction, or SQLite's write lock, open).

    On SQLite the block holds this process's write lock (:func:`~crowdtune.store.db.write_lock`)
    and its transaction begins IMMEDIATE, taking SQLite's lock up front: a transaction that
    reads and then writes would otherwise fail at once ("database is locked") if another writer
    committed in between, instead of waiting on the busy timeout. The block must commit.
    Every writer of the repository runs inside one (assignment too).
    """
    if session.in_transaction():
        session.commit()
    with write_lock(session.get_bind()):
        session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        try:
            yield
        except BaseException:
            session.rollback()
            raise
        if session.in_transaction():  # a block that forgot to commit must not keep the lock
            session.rollback()


def inserted_id(added: CursorResult[Any]) -> int:
    """The primary key of the row a Core INSERT added."""
    key = added.inserted_primary_key
    assert key is not None
    return int(key[0])


def commit_or_conflict(session: Session, message: str) -> None:
    """Commit; a unique constraint that fails is a :class:`ConflictError` saying ``message``."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(message) from exc


def create_contributor(
    session: Session, name: str, role: str = "annotator"
) -> tuple[Contributor, str]:
    """Add a contributor and return it with its new bearer token.

    The token (``secrets.token_urlsafe(32)``) is returned once and only its SHA-256 is stored;
    whoever loses it needs a new contributor. Commits.

    Raises
    ------
    ValueError
        The name is empty or too long, or the role is not ``admin`` or ``annotator``.
    ConflictError
        A contributor with this name exists.
    """
    name = check_name(name, "contributor name", MAX_NAME)
    check_choice(role, ROLES, "role")
    with writing(session):
        if session.scalar(select(Contributor.id).where(Contributor.name == name)) is not None:
            raise ConflictError(f"a contributor named {name!r} exists already; pick another name")
        token = secrets.token_urlsafe(32)
        contributor = Contributor(name=name, role=role, token_hash=hash_token(token))
        session.add(contributor)
        commit_or_conflict(session, f"a contributor named {name!r} exists already")
    return contributor, token


def _scale(kind: str, scale: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """The stored scale of a project of ``kind``: a rating project's (default
    :data:`DEFAULT_RATING_SCALE`), None for the other kinds."""
    if kind != "rating":
        if scale is not None:
            raise ValueError(f"only a rating project has a scale, not a {kind} project")
        return None, None
    low, high = DEFAULT_RATING_SCALE if scale is None else scale
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise ValueError(f"a scale is two whole numbers, got {scale!r}")
    if not -1000 <= low < high <= 1000:
        raise ValueError(
            f"a scale runs from its lowest to a higher score, within ±1000, got {scale!r}"
        )
    return low, high


def create_project(
    session: Session,
    name: str,
    *,
    overlap: int = 1,
    kind: str = "pairwise",
    scale: tuple[int, int] | None = None,
    assignment: str = "depth",
    editor_prefill: bool = True,
    base_model: str = "tiny",
) -> Project:
    """Add a project whose items each go to ``overlap`` distinct contributors. Commits.

    Parameters
    ----------
    kind
        ``pairwise`` (compare two answers), ``revision`` (rewrite one) or ``rating`` (score one).
    scale
        A rating project's ``(lowest, highest)`` whole-number score (default 1 to 7).
    assignment
        ``depth`` (default): a contributor gets an item others have started, so items reach
        ``overlap`` answers steadily; ``breadth``: the least assigned item first.
    editor_prefill
        Revision projects: the editor starts with the answer (True) or empty.
    base_model
        The model the first Crowd-SFT round of language models starts from: ``tiny``,
        ``smollm2``, a folder or a hub name (checked when a round loads it).

    Raises
    ------
    ValueError
        Empty or too long name, ``overlap`` below 1, an unknown kind or assignment order, or a
        scale that is not two whole numbers, lowest first (or is given for another kind).
    ConflictError
        A project with this name exists.
    """
    name = check_name(name, "project name", MAX_LABEL)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise ValueError(f"overlap must be an integer of at least 1, got {overlap!r}")
    check_choice(kind, PROJECT_KINDS, "project kind")
    check_choice(assignment, ASSIGNMENT_ORDERS, "assignment order")
    scale_min, scale_max = _scale(kind, scale)
    base_model = check_name(base_model, "base_model", MAX_PATH)
    with writing(session):
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise ConflictError(f"a project named {name!r} exists already; pick another name")
        project = Project(
            name=name,
            overlap=overlap,
            kind=kind,
            scale_min=scale_min,
            scale_max=scale_max,
            assignment=assignment,
            editor_prefill=bool(editor_prefill),
            base_model=base_model,
        )
        session.add(project)
        commit_or_conflict(session, f"a project named {name!r} exists already")
    return project


def record_round(
    session: Session,
    project_id: int,
    *,
    strategy: str,
    scheme: str,
    winner: str | None,
    details: Mapping[str, Any],
    after: int | None = None,
) -> Round:
    """Store the outcome of a Crowd-SFT round (``details`` must be JSON-ready). Commits.

    Parameters
    ----------
    after
        How many rounds the project had when this one was computed (it started from their
        points and model); None stores it whatever happened meanwhile.

    Raises
    ------
    NotFoundError
        No such project.
    ValueError
        ``strategy``, ``scheme`` or ``winner`` is empty or too long.
    ConflictError
        Another round was stored since this one started (``after`` is out of date).
    """
    with writing(session):
        stored = add_round(
            session, project_id, strategy=strategy, scheme=scheme, winner=winner,
            details=details, after=after,
        )  # fmt: skip
        session.commit()
    return stored


def add_round(
    session: Session,
    project_id: int,
    *,
    strategy: str,
    scheme: str,
    winner: str | None,
    details: Mapping[str, Any],
    after: int | None,
    ran: str = "this one",
    **columns: Any,
) -> Round:
    """Add a round in the caller's write transaction (:func:`writing`; the caller commits):
    check its names, take the project's row lock, refuse it when another round was stored
    since ``after`` (``ran`` names what was computing it, for the message), flush it.
    ``columns`` are more :class:`~crowdtune.store.models.Round` columns."""
    strategy = check_name(strategy, "strategy", MAX_NAME)
    scheme = check_name(scheme, "scheme", MAX_NAME)
    winner = None if winner is None else check_name(winner, "winner", MAX_LABEL)
    # The project's row lock (PostgreSQL; SQLite's write lock is taken already) makes two
    # rounds that finish together count the stored rounds one after the other.
    get_project(session, project_id, lock=True)
    stored_rounds = project_round_count(session, project_id)
    if after is not None and stored_rounds != after:
        raise ConflictError(
            f"another round of project {project_id} was stored while {ran} ran "
            f"({stored_rounds} rounds now, {after} when it started); run it again"
        )
    stored = Round(
        project_id=project_id,
        strategy=strategy,
        scheme=scheme,
        winner=winner,
        details=dict(details),
        **columns,
    )
    session.add(stored)
    session.flush()
    return stored
