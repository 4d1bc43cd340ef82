"""Repository functions: everything the server reads from and writes to the store.

Plain functions taking a SQLAlchemy :class:`~sqlalchemy.orm.Session` (from
:func:`crowdtune.store.session_factory`). Functions that write commit any transaction already
open on the session, run their own, and **commit** it before they return, so a caller never
acknowledges what is not stored; on an error they roll back and raise one of
:mod:`crowdtune.store.errors` (or ``ValueError`` for malformed input), leaving nothing half
written. Readers leave the session's transaction open.

Assignment (:func:`next_task`) is safe under concurrency on both backends: each item goes to at
most ``overlap`` distinct contributors and never twice to the same one, however many annotators
ask at once (PostgreSQL: row locks on the chosen item; SQLite: one writer at a time).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, exists, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from crowdtune.records import Comparison, Verdict
from crowdtune.store.db import SQLITE_BEGIN, write_lock
from crowdtune.store.errors import ConflictError, ForbiddenError, NotFoundError
from crowdtune.store.models import (
    PROJECT_KINDS,
    ROLES,
    Contributor,
    Item,
    Project,
    Response,
    Round,
    Task,
)
from crowdtune.validation import check_choice

#: Longest contributor name, project name, external id, model name and idempotency key.
MAX_NAME = 100
MAX_LABEL = 200
#: Fields an item dict may have (``id`` is read as ``external_id``).
ITEM_FIELDS = ("prompt", "response_a", "response_b", "model_a", "model_b", "gold", "external_id")
#: How often assignment retries after losing a race before it gives up.
ASSIGN_ATTEMPTS = 20


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _name(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters, got {len(value)}")
    return value


@contextmanager
def _writing(session: Session) -> Iterator[None]:
    """Commit the session's open transaction, begin one that will write, and roll it back if
    the block raises (so an error never leaves a transaction, or SQLite's write lock, open).

    On SQLite the block holds this process's write lock (:func:`~crowdtune.store.db.write_lock`)
    and its transaction begins IMMEDIATE, taking SQLite's lock up front: a transaction that
    reads and then writes would otherwise fail at once ("database is locked") if another writer
    committed in between, instead of waiting on the busy timeout. The block must commit.
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


# ---------------------------------------------------------------------------------------------
# contributors


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
    with _writing(session):
        if session.scalar(select(Contributor.id).where(Contributor.name == name)) is not None:
            raise ConflictError(f"a contributor named {name!r} exists already; pick another name")
        token = secrets.token_urlsafe(32)
        contributor = Contributor(name=name, role=role, token_hash=hash_token(token))
        session.add(contributor)
        _commit_or_conflict(session, f"a contributor named {name!r} exists already")
    return contributor, token


def contributor_by_token(session: Session, token: str) -> Contributor | None:
    """The contributor whose token this is, or None."""
    if not token:
        return None
    return session.scalar(select(Contributor).where(Contributor.token_hash == hash_token(token)))


def contributor_by_name(session: Session, name: str) -> Contributor:
    """The contributor with this name; :class:`NotFoundError` when there is none."""
    contributor = session.scalar(select(Contributor).where(Contributor.name == name))
    if contributor is None:
        raise NotFoundError(f"no contributor named {name!r}")
    return contributor


def _contributor(session: Session, contributor_id: int) -> Contributor:
    contributor = session.get(Contributor, contributor_id)
    if contributor is None:
        raise NotFoundError(f"no contributor with id {contributor_id}")
    return contributor


# ---------------------------------------------------------------------------------------------
# projects and items


def create_project(
    session: Session, name: str, overlap: int = 1, kind: str = "pairwise"
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
    with _writing(session):
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise ConflictError(f"a project named {name!r} exists already; pick another name")
        project = Project(name=name, overlap=overlap, kind=kind)
        session.add(project)
        _commit_or_conflict(session, f"a project named {name!r} exists already")
    return project


def get_project(session: Session, project_id: int, *, lock: bool = False) -> Project:
    """The project with this id; :class:`NotFoundError` when there is none. ``lock`` takes its
    row lock (``FOR UPDATE`` on PostgreSQL) until the transaction ends."""
    project = session.get(Project, project_id, with_for_update=lock or None)
    if project is None:
        raise NotFoundError(f"no project with id {project_id}")
    return project


def list_projects(session: Session) -> list[Project]:
    """Every project, oldest first."""
    return list(session.scalars(select(Project).order_by(Project.id)))


def project_by_name(session: Session, name: str) -> Project:
    """The project with this name; :class:`NotFoundError` when there is none."""
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFoundError(f"no project named {name!r}")
    return project


def _turns(value: object, where: str) -> list[str]:
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list | tuple) or not all(isinstance(t, str) for t in turns):
        raise ValueError(f"{where}: expected a string or a list of strings, got {value!r:.80}")
    if not turns:
        raise ValueError(f"{where}: needs at least one turn")
    return list(turns)


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
) -> list[Item]:
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
    list of Item
        The new items, in input order.

    Raises
    ------
    NotFoundError
        No such project.
    ValueError
        An item is malformed; the message names its 0-based index and the field.
    ConflictError
        An external id repeats, within ``items`` or in the project already.
    """
    rows = [_item_values(entry, index, verdict_as_gold) for index, entry in enumerate(items)]
    with _writing(session):
        get_project(session, project_id)
        external = [row["external_id"] for row in rows if row["external_id"] is not None]
        seen: set[str] = set()
        for ident in external:
            if ident in seen:
                raise ConflictError(f"external id {ident!r} appears more than once in the items")
            seen.add(ident)
        if external:
            taken = session.scalars(
                select(Item.external_id).where(
                    Item.project_id == project_id, Item.external_id.in_(external)
                )
            ).first()
            if taken is not None:
                raise ConflictError(f"project {project_id} already has an item with id {taken!r}")
        new = [Item(project_id=project_id, **row) for row in rows]
        session.add_all(new)
        _commit_or_conflict(
            session, f"an external id of these items is in project {project_id} already"
        )
    return new


# ---------------------------------------------------------------------------------------------
# assignment


def _open_task(session: Session, project_id: int, contributor_id: int) -> Task | None:
    return session.scalar(
        select(Task)
        .join(Item, Task.item_id == Item.id)
        .options(contains_eager(Task.item))
        .where(
            Item.project_id == project_id,
            Task.contributor_id == contributor_id,
            Task.answered == false(),
        )
        .order_by(Task.id)
        .limit(1)
    )


def _candidate(
    session: Session, project: Project, contributor_id: int, *, skip_locked: bool
) -> Item | None:
    """The least assigned item still short of ``overlap`` and new to the contributor,
    locked (PostgreSQL) until the transaction ends. Reads the (project, assigned, id) index in
    order and stops at the first item the contributor has not had."""
    mine = exists().where(Task.item_id == Item.id, Task.contributor_id == contributor_id)
    return session.scalar(
        select(Item)
        .where(Item.project_id == project.id, Item.assigned < project.overlap, ~mine)
        .order_by(Item.assigned, Item.id)
        .limit(1)
        .with_for_update(of=Item, skip_locked=skip_locked)
    )


def _claim(session: Session, item_id: int, overlap: int) -> bool:
    """Count one more task on the item if it is still short of ``overlap``.

    One conditional UPDATE: under READ COMMITTED it waits for, and then re-reads, the row a
    concurrent assignment changed, so the count never passes ``overlap``.
    """
    claimed = session.execute(
        update(Item)
        .where(Item.id == item_id, Item.assigned < overlap)
        .values(assigned=Item.assigned + 1)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], claimed).rowcount == 1


def next_task(session: Session, project_id: int, contributor_id: int) -> Task | None:
    """The task a contributor should do next in a project, created when needed. Commits.

    First an open task (one without a response) the contributor has in the project, oldest
    first; otherwise a new task for the item with the fewest assignments among those with fewer
    than the project's ``overlap`` and none for this contributor (ties go to the lower item id).
    None when nothing is left for this contributor.

    Items keep their task count (``Item.assigned``), so the choice reads one index. Safe when
    many annotators ask at once: on PostgreSQL the chosen item's row is locked (``FOR UPDATE
    SKIP LOCKED``, then waiting for it when every candidate is locked) and its count raised by
    a conditional UPDATE that fails if it reached the overlap meanwhile; on SQLite the
    transaction takes the write lock as it begins. The unique (item, contributor) constraint
    catches the rest, and the function retries.
    A transaction already open on ``session`` is committed first.

    Raises
    ------
    NotFoundError
        No such project or contributor.
    ConflictError
        Assignment kept losing races for :data:`ASSIGN_ATTEMPTS` attempts.
    """
    for _ in range(ASSIGN_ATTEMPTS):
        try:
            with _writing(session):
                project = get_project(session, project_id)
                _contributor(session, contributor_id)
                task = _open_task(session, project_id, contributor_id)
                if task is not None:
                    session.commit()
                    return task
                item = _candidate(session, project, contributor_id, skip_locked=True)
                if item is None:
                    # Every candidate may be locked by a concurrent assignment that could still
                    # leave room (overlap > 1, or it rolls back): wait for one instead.
                    item = _candidate(session, project, contributor_id, skip_locked=False)
                if item is None:
                    session.commit()
                    return None
                if not _claim(session, item.id, project.overlap):
                    session.rollback()
                    continue
                # The item comes loaded with the task: nothing is read after the commit.
                task = Task(item=item, contributor_id=contributor_id)
                session.add(task)
                session.commit()
                return task
        except IntegrityError:
            continue  # lost a race for this item; _writing rolled back
    raise ConflictError(
        f"could not assign an item of project {project_id} to contributor {contributor_id} "
        f"after {ASSIGN_ATTEMPTS} attempts; try again"
    )


# ---------------------------------------------------------------------------------------------
# responses


def submit_response(
    session: Session,
    task_id: int,
    contributor_id: int,
    verdict: Verdict | str | int,
    reason: str | None = None,
    seconds: float | None = None,
    idempotency_key: str | None = None,
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
        Chosen by the client per submission: submitting again with the same key (a retry after a
        lost reply) returns the stored response and changes nothing. None stores a fresh key,
        which makes the call non-repeatable.

    Returns
    -------
    (Response, bool)
        The stored response, and whether this call created it.

    Raises
    ------
    ValueError
        Bad verdict, negative or non-finite seconds, or a key longer than 200 characters.
    NotFoundError
        No such task.
    ForbiddenError
        The task belongs to another contributor.
    ConflictError
        The task has a response under another key, or this key was used for another task.
    """
    verdict = Verdict.parse(verdict)
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise ValueError(f"seconds must be a finite number of at least 0, got {seconds!r}")
    key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
    key = _name(key, "idempotency key", MAX_LABEL)
    for _ in range(2):
        with _writing(session):
            stored = session.scalar(
                select(Response).where(
                    Response.contributor_id == contributor_id, Response.idempotency_key == key
                )
            )
            if stored is not None:
                if stored.task_id != task_id:
                    raise ConflictError(
                        f"idempotency key {key!r} was used for task {stored.task_id}, not "
                        f"{task_id}; use a new key for each submission"
                    )
                session.commit()
                return stored, False
            task = session.get(Task, task_id)
            if task is None:
                raise NotFoundError(f"no task with id {task_id}")
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


# ---------------------------------------------------------------------------------------------
# reading results


def project_comparisons(session: Session, project_id: int) -> list[Comparison]:
    """Every vote of a project as a :class:`~crowdtune.records.Comparison`, oldest first.

    ``id`` is ``"{item}/{contributor}"`` (the item's external id, else ``item-{id}``),
    ``annotator`` the contributor's name and ``source`` the project's name, so the records go
    straight to :func:`crowdtune.datasets.comparisons.write_jsonl` and the other writers.
    """
    project = get_project(session, project_id)
    rows = session.execute(
        select(Response.verdict, Item, Contributor.name)
        .join(Task, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .join(Contributor, Response.contributor_id == Contributor.id)
        .where(Item.project_id == project_id)
        .order_by(Response.id)
    ).all()
    return [_as_comparison(item, verdict, project.name, name) for verdict, item, name in rows]


def _as_comparison(
    item: Item, verdict: Verdict, source: str, annotator: str | None = None
) -> Comparison:
    """An item with a verdict as a record: ``id`` is the item's external id (else
    ``item-{id}``), followed by ``/{annotator}`` for a vote."""
    ident = item.external_id or f"item-{item.id}"
    return Comparison(
        id=ident if annotator is None else f"{ident}/{annotator}",
        prompt=tuple(item.prompt),
        response_a=tuple(item.response_a),
        response_b=tuple(item.response_b),
        verdict=verdict,
        annotator=annotator,
        model_a=item.model_a,
        model_b=item.model_b,
        source=source,
    )


@dataclass(frozen=True)
class Progress:
    """How far a project is: counts of items, tasks handed out and responses received."""

    items: int
    tasks: int
    responses: int
    #: Tasks handed out and not yet answered.
    open_tasks: int
    #: Items with ``overlap`` responses.
    items_complete: int
    overlap: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def progress(session: Session, project_id: int) -> Progress:
    """Counts of a project's items, tasks, responses and completed items."""
    project = get_project(session, project_id)
    in_project = Item.project_id == project_id
    items = session.scalar(select(func.count(Item.id)).where(in_project)) or 0
    tasks = session.scalar(select(func.count(Task.id)).join(Item).where(in_project)) or 0
    responses = (
        session.scalar(
            select(func.count(Response.id))
            .join(Task, Response.task_id == Task.id)
            .join(Item, Task.item_id == Item.id)
            .where(in_project)
        )
        or 0
    )
    answered = (
        select(Task.item_id)
        .join(Response, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .where(in_project)
        .group_by(Task.item_id)
        .having(func.count(Response.id) >= project.overlap)
        .subquery()
    )
    complete = session.scalar(select(func.count()).select_from(answered)) or 0
    return Progress(
        items=items,
        tasks=tasks,
        responses=responses,
        open_tasks=tasks - responses,
        items_complete=complete,
        overlap=project.overlap,
    )


@dataclass(frozen=True)
class Vote:
    """One stored vote with what scoring it needs: the item, its gold answer and the voter."""

    response_id: int
    item_id: int
    contributor_id: int
    contributor: str
    verdict: Verdict
    #: The item's known answer, or None.
    gold: Verdict | None


def project_votes(session: Session, project_id: int) -> list[Vote]:
    """Every vote of a project with its item id and gold answer, oldest first.

    Raises
    ------
    NotFoundError
        No such project.
    """
    get_project(session, project_id)
    rows = session.execute(
        select(Response.id, Item.id, Contributor.id, Contributor.name, Response.verdict, Item.gold)
        .join(Task, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .join(Contributor, Response.contributor_id == Contributor.id)
        .where(Item.project_id == project_id)
        .order_by(Response.id)
    ).all()
    return [Vote(*row) for row in rows]


# ---------------------------------------------------------------------------------------------
# Crowd-SFT rounds


def project_gold_items(session: Session, project_id: int) -> list[Comparison]:
    """The project's items that have a gold answer, as :class:`~crowdtune.records.Comparison`
    records whose ``verdict`` is that answer (``id`` the external id, else ``item-{id}``;
    no annotator), in item order.

    Raises
    ------
    NotFoundError
        No such project.
    """
    project = get_project(session, project_id)
    items = session.scalars(
        select(Item).where(Item.project_id == project_id, Item.gold.is_not(None)).order_by(Item.id)
    )
    return [_as_comparison(item, cast(Verdict, item.gold), project.name) for item in items]


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
    with _writing(session):
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


def project_rounds(session: Session, project_id: int) -> list[Round]:
    """Every round of a project, oldest first.

    Raises
    ------
    NotFoundError
        No such project.
    """
    get_project(session, project_id)
    return list(
        session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.id))
    )
