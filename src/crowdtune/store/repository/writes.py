"""Repository writes: contributors, projects, items, votes and Crowd-SFT rounds.

Each writer commits any transaction already open on the session, runs its own (inside
:func:`writing`) and **commits** it before it returns, so a caller never acknowledges what is
not stored; on an error it rolls back and raises one of :mod:`crowdtune.store.errors` (or
``ValueError`` for malformed input), leaving nothing half written.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crowdtune.records import Comparison, Verdict
from crowdtune.store.db import SQLITE_BEGIN, write_lock
from crowdtune.store.errors import ConflictError, ForbiddenError, NotFoundError, ReusedKeyError
from crowdtune.store.models import (
    PROJECT_KINDS,
    ROLES,
    Contributor,
    Item,
    Project,
    Response,
    Round,
    Task,
    utc_now,
)
from crowdtune.store.repository.reads import get_project, hash_token
from crowdtune.validation import check_choice, check_text

#: Longest contributor name, project name, external id, model name and idempotency key.
MAX_NAME = 100
MAX_LABEL = 200
#: Fields an item dict may have (``id`` is read as ``external_id``).
ITEM_FIELDS = ("prompt", "response_a", "response_b", "model_a", "model_b", "gold", "external_id")
#: External ids checked against the stored ones per query by :func:`add_items`.
ID_CHECK_SLICE = 10_000


def _name(value: str, what: str, limit: int) -> str:
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


def _commit_or_conflict(session: Session, message: str) -> None:
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
    name = _name(name, "contributor name", MAX_NAME)
    check_choice(role, ROLES, "role")
    with writing(session):
        if session.scalar(select(Contributor.id).where(Contributor.name == name)) is not None:
            raise ConflictError(f"a contributor named {name!r} exists already; pick another name")
        token = secrets.token_urlsafe(32)
        contributor = Contributor(name=name, role=role, token_hash=hash_token(token))
        session.add(contributor)
        _commit_or_conflict(session, f"a contributor named {name!r} exists already")
    return contributor, token


def create_project(
    session: Session, name: str, *, overlap: int = 1, kind: str = "pairwise"
) -> Project:
    """Add a project whose items each go to ``overlap`` distinct contributors. Commits.

    Raises
    ------
    ValueError
        Empty or too long name, ``overlap`` below 1, or an unknown kind.
    ConflictError
        A project with this name exists.
    """
    name = _name(name, "project name", MAX_LABEL)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise ValueError(f"overlap must be an integer of at least 1, got {overlap!r}")
    check_choice(kind, PROJECT_KINDS, "project kind")
    with writing(session):
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise ConflictError(f"a project named {name!r} exists already; pick another name")
        project = Project(name=name, overlap=overlap, kind=kind)
        session.add(project)
        _commit_or_conflict(session, f"a project named {name!r} exists already")
    return project


def _turns(value: object, where: str) -> list[str]:
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list | tuple) or not all(isinstance(t, str) for t in turns):
        raise ValueError(f"{where}: expected a string or a list of strings, got {value!r:.80}")
    if not turns:
        raise ValueError(f"{where}: needs at least one turn")
    return [check_text(turn, where) for turn in turns]


def _optional_label(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"{where}: expected a string, got {value!r:.80}")
    return _name(str(value), where, MAX_LABEL)


def comparison_item(comparison: Comparison, gold: bool = False) -> dict[str, Any]:
    """The item fields of a comparison (its id as the external id); its verdict becomes the
    gold answer when ``gold``."""
    return {
        "prompt": list(comparison.prompt),
        "response_a": list(comparison.response_a),
        "response_b": list(comparison.response_b),
        "model_a": comparison.model_a,
        "model_b": comparison.model_b,
        "gold": comparison.verdict if gold else None,
        "external_id": comparison.id,
    }


def comparison_items(
    comparisons: list[Comparison], *, gold_share: float = 0.0, seed: int = 0
) -> list[dict[str, Any]]:
    """The item fields of ``comparisons`` (:func:`comparison_item`); a random ``gold_share`` of
    them, drawn from ``seed``, keep their verdict as the gold answer."""
    if not 0 <= gold_share <= 1:
        raise ValueError(f"gold_share must be between 0 and 1, got {gold_share}")
    rng = np.random.default_rng(seed)
    size = round(gold_share * len(comparisons))
    gold = set(rng.choice(len(comparisons), size=size, replace=False))
    return [comparison_item(c, i in gold) for i, c in enumerate(comparisons)]


def _item_values(entry: Mapping[str, Any] | Comparison, index: int, gold: bool) -> dict[str, Any]:
    if isinstance(entry, Comparison):
        item = comparison_item(entry, gold)
        item["external_id"] = _optional_label(entry.id, f"item {index}: id")
        return item
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"item {index}: expected a dict or a Comparison, got {type(entry).__name__}"
        )
    data = dict(entry)
    if "id" in data:
        if "external_id" in data:
            raise ValueError(f"item {index}: give either id or external_id, not both")
        data["external_id"] = data.pop("id")
    if unknown := sorted(set(data) - set(ITEM_FIELDS)):
        raise ValueError(
            f"item {index}: unknown field(s) {unknown}; fields are {list(ITEM_FIELDS)}"
        )
    if missing := [key for key in ("prompt", "response_a", "response_b") if key not in data]:
        raise ValueError(f"item {index}: missing field(s) {missing}")
    values: dict[str, Any] = {
        key: _turns(data[key], f"item {index}: {key}")
        for key in ("prompt", "response_a", "response_b")
    }
    for key in ("model_a", "model_b", "external_id"):
        values[key] = _optional_label(data.get(key), f"item {index}: {key}")
    try:
        values["gold"] = None if data.get("gold") is None else Verdict.parse(data["gold"])
    except ValueError as exc:
        raise ValueError(f"item {index}: gold: {exc}") from None
    return values


def add_items(
    session: Session,
    project_id: int,
    items: Iterable[Mapping[str, Any] | Comparison],
    *,
    verdict_as_gold: bool = False,
) -> int:
    """Add items to a project, all or none. Commits.

    Parameters
    ----------
    items
        Dicts with ``prompt``, ``response_a`` and ``response_b`` (a string or a list of turns)
        and optionally ``model_a``, ``model_b``, ``gold`` (``'a'``, ``'b'``, ``'tie'``) and
        ``external_id`` (or ``id``); or :class:`~crowdtune.records.Comparison` records, whose
        id becomes the external id.
    verdict_as_gold
        Store each Comparison's verdict as the item's gold answer (otherwise it is dropped).

    Returns
    -------
    int
        How many items were added. (Not the items: for an import of many thousand rows,
        making the objects and reading back their ids would take longer than storing them.)

    Raises
    ------
    NotFoundError
        No such project.
    ValueError
        An item is malformed; the message names its 0-based index and the field.
    ConflictError
        An external id repeats, within ``items`` or in the project already.
    """
    # Everything per row happens before the write lock is taken: on SQLite every other writer
    # (a vote, an assignment) waits while the rows go in, so that part is one bulk INSERT.
    now = utc_now()
    rows = [
        {**_item_values(entry, index, verdict_as_gold), "project_id": project_id,
         "assigned": 0, "created_at": now}
        for index, entry in enumerate(items)
    ]  # fmt: skip
    with writing(session):
        get_project(session, project_id)
        external = [row["external_id"] for row in rows if row["external_id"] is not None]
        seen: set[str] = set()
        for ident in external:
            if ident in seen:
                raise ConflictError(f"external id {ident!r} appears more than once in the items")
            seen.add(ident)
        # In slices, because a statement takes at most 65,535 parameters (PostgreSQL).
        for start in range(0, len(external), ID_CHECK_SLICE):
            taken = session.scalars(
                select(Item.external_id).where(
                    Item.project_id == project_id,
                    Item.external_id.in_(external[start : start + ID_CHECK_SLICE]),
                )
            ).first()
            if taken is not None:
                raise ConflictError(f"project {project_id} already has an item with id {taken!r}")
        conflict = f"an external id of these items is in project {project_id} already"
        try:
            if rows:
                session.execute(insert(Item), rows)
        except IntegrityError as exc:
            session.rollback()
            raise ConflictError(conflict) from exc
        _commit_or_conflict(session, conflict)
    return len(rows)


def _changed_fields(
    stored: Response, verdict: Verdict, reason: str | None, seconds: float | None
) -> list[str]:
    """The fields of a submission that differ from the response stored under its key."""
    sent = {"verdict": verdict, "reason": reason, "seconds": seconds}
    kept = {"verdict": stored.verdict, "reason": stored.reason, "seconds": stored.seconds_spent}
    return [field for field in sent if sent[field] != kept[field]]


def submit_response(
    session: Session,
    task_id: int,
    contributor_id: int,
    *,
    verdict: Verdict | str | int,
    reason: str | None = None,
    seconds: float | None = None,
    idempotency_key: str | None = None,
    project_id: int | None = None,
) -> tuple[Response, bool]:
    """Store the vote that closes a task; idempotent per (contributor, key). Commits.

    Parameters
    ----------
    verdict
        ``'a'``, ``'b'``, ``'tie'`` (any case), 0/1/2 or a :class:`Verdict`.
    reason
        Free text the contributor gave, or None.
    seconds
        Time spent on the task (not negative), or None.
    idempotency_key
        Chosen by the client per submission: submitting the same body again with the same key
        (a retry after a lost reply) returns the stored response and changes nothing. None
        stores a fresh key, which makes the call non-repeatable.
    project_id
        The project the task must belong to (a task of another project is not found); None
        accepts a task of any project.

    Returns
    -------
    (Response, bool)
        The stored response, and whether this call created it.

    Raises
    ------
    ValueError
        Bad verdict, negative or non-finite seconds, a key longer than 200 characters, or a
        NUL or lone surrogate in the reason or the key.
    ReusedKeyError
        The key was sent before with a different verdict, reason or seconds (a ``ValueError``
        too); nothing is stored.
    NotFoundError
        No such task (in ``project_id``, when given).
    ForbiddenError
        The task belongs to another contributor.
    ConflictError
        The task has a response under another key, or this key was used for another task.
    """
    verdict = Verdict.parse(verdict)
    if reason is not None:
        check_text(reason, "reason")
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise ValueError(f"seconds must be a finite number of at least 0, got {seconds!r}")
    key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
    key = _name(key, "idempotency key", MAX_LABEL)
    for _ in range(2):
        with writing(session):
            stored = session.scalar(
                select(Response).where(
                    Response.contributor_id == contributor_id, Response.idempotency_key == key
                )
            )
            if stored is not None and stored.task_id != task_id:
                raise ConflictError(
                    f"idempotency key {key!r} was used for task {stored.task_id}, not "
                    f"{task_id}; use a new key for each submission"
                )
            task = session.get(Task, task_id)
            if task is None or (project_id is not None and task.item.project_id != project_id):
                where = "" if project_id is None else f" in project {project_id}"
                raise NotFoundError(f"no task with id {task_id}{where}")
            if stored is not None:
                if changed := _changed_fields(stored, verdict, reason, seconds):
                    raise ReusedKeyError(
                        f"idempotency key {key!r} was sent before with a different "
                        f"{', '.join(changed)}; send the first body again to get its reply, "
                        "or use a new key for a new submission"
                    )
                session.commit()
                return stored, False
            if task.contributor_id != contributor_id:
                raise ForbiddenError(f"task {task_id} is assigned to another contributor")
            answered = session.scalar(select(Response).where(Response.task_id == task_id))
            if answered is not None:
                raise ConflictError(
                    f"task {task_id} was answered already (response {answered.id}, under another "
                    "idempotency key)"
                )
            response = Response(
                task_id=task_id,
                contributor_id=contributor_id,
                verdict=verdict,
                reason=reason,
                seconds_spent=seconds,
                idempotency_key=key,
            )
            session.add(response)
            task.answered = True
            try:
                session.commit()
            except IntegrityError:
                # A concurrent submission won; the next pass finds it (same key) or reports it.
                session.rollback()
                continue
            return response, True
    raise ConflictError(f"task {task_id} was answered concurrently under another key")


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
    strategy = _name(strategy, "strategy", MAX_NAME)
    scheme = _name(scheme, "scheme", MAX_NAME)
    winner = None if winner is None else _name(winner, "winner", MAX_LABEL)
    with writing(session):
        # The project's row lock (PostgreSQL; SQLite's write lock is taken already) makes two
        # rounds that finish together count the stored rounds one after the other.
        get_project(session, project_id, lock=True)
        stored_rounds = session.scalar(
            select(func.count(Round.id)).where(Round.project_id == project_id)
        )
        if after is not None and stored_rounds != after:
            raise ConflictError(
                f"another round of project {project_id} was stored while this one ran "
                f"({stored_rounds} rounds now, {after} when it started); run it again"
            )
        stored = Round(
            project_id=project_id,
            strategy=strategy,
            scheme=scheme,
            winner=winner,
            details=dict(details),
        )
        session.add(stored)
        session.commit()
    return stored
