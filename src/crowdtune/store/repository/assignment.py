"""Repository assignment: which task a contributor does next (:func:`next_task`).

Safe under concurrency on both backends: each item goes to at most ``overlap`` distinct
contributors and never twice to the same one, however many annotators ask at once
(PostgreSQL: row locks on the chosen item; SQLite: one writer at a time). Like every writer,
:func:`next_task` commits before it returns.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, exists, false, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from crowdtune.store.errors import ConflictError
from crowdtune.store.models import Item, Project, Task
from crowdtune.store.repository.reads import get_contributor, get_project
from crowdtune.store.repository.writes import writing

#: How often assignment retries after losing a race before it gives up.
ASSIGN_ATTEMPTS = 20


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
    """The next item for the contributor among those still short of ``overlap`` and new to
    them, locked (PostgreSQL) until the transaction ends.

    ``breadth``: the least assigned item (ties to the lower id). ``depth``: the most assigned
    one, so items others have started reach ``overlap`` first; read level by level, from
    ``overlap - 1`` down to 0, so that each query walks the (project, assigned, id) index in
    order and stops at the first item the contributor has not had.
    """
    mine = exists().where(Task.item_id == Item.id, Task.contributor_id == contributor_id)
    open_items = select(Item).where(Item.project_id == project.id, ~mine)
    if project.assignment == "breadth":
        levels = [open_items.where(Item.assigned < project.overlap).order_by(Item.assigned)]
    else:
        levels = [
            open_items.where(Item.assigned == level) for level in range(project.overlap - 1, -1, -1)
        ]
    for query in levels:
        item = session.scalar(
            query.order_by(Item.id).limit(1).with_for_update(of=Item, skip_locked=skip_locked)
        )
        if item is not None:
            return item
    return None


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
    first; otherwise a new task for an item with fewer than the project's ``overlap``
    assignments and none for this contributor: the one with the most assignments when the
    project's ``assignment`` is ``depth`` (the default: items complete steadily, and agreement
    shows early), the fewest when it is ``breadth``; ties go to the lower item id. None when
    nothing is left for this contributor.

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
            with writing(session):
                project = get_project(session, project_id)
                get_contributor(session, contributor_id)
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
            continue  # lost a race for this item; writing rolled back
    raise ConflictError(
        f"could not assign an item of project {project_id} to contributor {contributor_id} "
        f"after {ASSIGN_ATTEMPTS} attempts; try again"
    )
