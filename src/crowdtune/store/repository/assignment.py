"""Repository assignment: which task a contributor does next.

:func:`assign` is the work itself, a few SQLAlchemy Core statements on a
:class:`~sqlalchemy.Connection` inside a write transaction its caller owns: the server's group
commit (:class:`crowdtune.store.group_commit.GroupCommit`) runs it beside other requests in one
batch, :func:`next_task` in a transaction of its own for callers that hold a
:class:`~sqlalchemy.orm.Session` (the CLI, simulations, the web pages, tests).

Safe under concurrency on both backends: each item goes to at most ``overlap`` distinct
contributors and never twice to the same one, however many annotators (and server processes)
ask at once. PostgreSQL: row locks on the chosen item (``FOR UPDATE SKIP LOCKED``), a
conditional UPDATE of its count and the unique (item, contributor) constraint, retried in a
savepoint (:func:`~crowdtune.store.db.retrying`). SQLite: the transaction holds the
database's write lock from its first statement (``BEGIN IMMEDIATE`` behind
:func:`~crowdtune.store.db.write_lock`), so the read that picks the item and the write that
claims it see the same database, whatever process runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, exists, false, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from crowdtune.store.db import RACE_ATTEMPTS, retrying
from crowdtune.store.errors import LostRaceError, NotFoundError
from crowdtune.store.models import Contributor, Item, Project, Task, utc_now
from crowdtune.store.repository.writes import CoreRow, inserted_id, writing

#: How often assignment retries after losing a race before it gives up.
ASSIGN_ATTEMPTS = RACE_ATTEMPTS


@dataclass(frozen=True)
class AssignedTask:
    """A task as :func:`assign` hands it out: what an annotator is shown of it and its project,
    detached from any database session (never the gold answer or others' answers)."""

    id: int
    item_id: int
    contributor_id: int
    kind: str
    prompt: list[str]
    response_a: list[str]
    response_b: list[str] | None
    editor_prefill: bool
    scale: tuple[int, int] | None


# The statements of assignment, built once with bound parameters: building a statement and
# its cache key costs more Python than running it on SQLite.
_PROJECT = select(
    Project.kind, Project.overlap, Project.assignment, Project.editor_prefill,
    Project.scale_min, Project.scale_max,
    exists().where(Contributor.id == bindparam("contributor")).label("contributor_known"),
).where(Project.id == bindparam("project"))  # fmt: skip
#: The columns of an item shown to an annotator.
_SHOWN = (Item.id, Item.prompt, Item.response_a, Item.response_b)
_OPEN_TASK = (
    select(Task.id.label("task_id"), *_SHOWN)
    .join(Item, Task.item_id == Item.id)
    .where(
        Item.project_id == bindparam("project"),
        Task.contributor_id == bindparam("contributor"),
        Task.answered == false(),
    )
    .order_by(Task.id)
    .limit(1)
)
_NEW_TO_THEM = select(*_SHOWN).where(
    Item.project_id == bindparam("project"),
    ~exists().where(Task.item_id == Item.id, Task.contributor_id == bindparam("contributor")),
)
# (assignment order, skip locked rows) -> the query of one candidate: ``depth`` reads one
# level of ``assigned`` at a time, ``breadth`` the least assigned item below the overlap.
_CANDIDATE = {
    (order, skip): query.order_by(Item.id).limit(1).with_for_update(of=Item, skip_locked=skip)
    for skip in (True, False)
    for order, query in (
        ("depth", _NEW_TO_THEM.where(Item.assigned == bindparam("level"))),
        ("breadth", _NEW_TO_THEM.where(Item.assigned < bindparam("overlap"))
         .order_by(Item.assigned)),
    )
}  # fmt: skip
# One conditional UPDATE: under READ COMMITTED it waits for, and then re-reads, the row a
# concurrent assignment changed, so the count never passes the overlap.
_CLAIM = (
    update(Item)
    .where(Item.id == bindparam("item"), Item.assigned < bindparam("overlap"))
    .values(assigned=Item.assigned + 1)
)
_ADD_TASK = insert(Task)


def _project(connection: Connection, project_id: int, contributor_id: int) -> CoreRow:
    """The project's assignment settings; NotFoundError for no such project or contributor."""
    project = connection.execute(
        _PROJECT, {"project": project_id, "contributor": contributor_id}
    ).first()
    if project is None:
        raise NotFoundError(f"no project with id {project_id}")
    if not project.contributor_known:
        raise NotFoundError(f"no contributor with id {contributor_id}")
    return project


def _candidate(
    connection: Connection, project_id: int, project: CoreRow, contributor_id: int, *,
    skip_locked: bool,
) -> CoreRow | None:  # fmt: skip
    """The next item for the contributor among those still short of ``overlap`` and new to
    them, locked (PostgreSQL) until the transaction ends.

    ``breadth``: the least assigned item (ties to the lower id). ``depth``: the most assigned
    one, so items others have started reach ``overlap`` first; read level by level, from
    ``overlap - 1`` down to 0, so that each query walks the (project, assigned, id) index in
    order and stops at the first item the contributor has not had.
    """
    query = _CANDIDATE[project.assignment, skip_locked]
    params = {"project": project_id, "contributor": contributor_id, "overlap": project.overlap}
    levels = [0] if project.assignment == "breadth" else range(project.overlap - 1, -1, -1)
    for level in levels:
        item = connection.execute(query, {**params, "level": level}).first()
        if item is not None:
            return item
    return None


def _assign_once(
    connection: Connection, project_id: int, project: CoreRow, contributor_id: int
) -> AssignedTask | None:
    task_id: int
    ids = {"project": project_id, "contributor": contributor_id}
    item = connection.execute(_OPEN_TASK, ids).first()
    if item is not None:
        task_id = item.task_id
    else:
        item = _candidate(connection, project_id, project, contributor_id, skip_locked=True)
        if item is None:
            # Every candidate may be locked by a concurrent assignment that could still leave
            # room (overlap > 1, or it rolls back): wait for one instead.
            item = _candidate(connection, project_id, project, contributor_id, skip_locked=False)
        if item is None:
            return None
        claimed = connection.execute(_CLAIM, {"item": item.id, "overlap": project.overlap})
        lost = LostRaceError(
            f"could not assign an item of project {project_id} to contributor "
            f"{contributor_id} after {RACE_ATTEMPTS} attempts; try again"
        )
        if cast(CursorResult[Any], claimed).rowcount != 1:
            raise lost  # the item filled up since it was chosen
        try:
            added = connection.execute(
                _ADD_TASK,
                {"item_id": item.id, "contributor_id": contributor_id, "answered": False,
                 "created_at": utc_now()},
            )  # fmt: skip
        except IntegrityError:
            raise lost from None  # a concurrent request of the same person took the item
        task_id = inserted_id(added)
    scale = None if project.scale_min is None else (project.scale_min, project.scale_max)
    return AssignedTask(
        id=task_id, item_id=item.id, contributor_id=contributor_id, kind=project.kind,
        prompt=item.prompt, response_a=item.response_a, response_b=item.response_b,
        editor_prefill=project.editor_prefill, scale=scale,
    )  # fmt: skip


def assign(connection: Connection, project_id: int, contributor_id: int) -> AssignedTask | None:
    """The task a contributor should do next in a project, created when needed, in the write
    transaction open on ``connection`` (the caller commits it; nothing is acknowledged before).

    First an open task (one without a response) the contributor has in the project, oldest
    first; otherwise a new task for an item with fewer than the project's ``overlap``
    assignments and none for this contributor: the one with the most assignments when the
    project's ``assignment`` is ``depth`` (the default: items complete steadily, and agreement
    shows early), the fewest when it is ``breadth``; ties go to the lower item id. None when
    nothing is left for this contributor. Items keep their task count (``Item.assigned``), so
    the choice reads one index; a vote costs five or six statements.

    Run it through :func:`~crowdtune.store.db.retrying` (the group commit and
    :func:`next_task` do): an attempt that lost a race (PostgreSQL: the item filled up, or the
    unique (item, contributor) constraint caught a duplicate) raises
    :class:`~crowdtune.store.errors.LostRaceError`, its savepoint rolls back, and the choice
    is made again.

    Raises
    ------
    NotFoundError
        No such project or contributor.
    LostRaceError
        A race was lost (a :class:`ConflictError`: 409 once
        :data:`~crowdtune.store.db.RACE_ATTEMPTS` attempts all lost).
    """
    return _assign_once(connection, project_id, _project(connection, project_id, contributor_id),
                        contributor_id)  # fmt: skip


def next_task(session: Session, project_id: int, contributor_id: int) -> Task | None:
    """:func:`assign` in a transaction of its own on ``session``, committed before this
    returns; the task comes back as a :class:`~crowdtune.store.models.Task` with its item and
    project loaded. A transaction already open on ``session`` is committed first.

    Raises what :func:`assign` raises.
    """
    with writing(session):
        found = retrying(
            session.connection(), lambda connection: assign(connection, project_id, contributor_id)
        )
        session.commit()
    if found is None:
        return None
    return session.get(Task, found.id, options=[joinedload(Task.item).joinedload(Item.project)])
