"""Repository reads: contributors by token or name, projects, and a project's votes, revisions,
ratings, progress, gold items, item keys and rounds.

Readers leave the session's transaction open (the caller ends it, or the next writer commits
it); none writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session

from crowdtune.records import Comparison, Rating, Revision, Verdict, join_turns
from crowdtune.store.errors import NotFoundError
from crowdtune.store.models import Contributor, Item, Project, Response, Round, Task


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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


def get_contributor(session: Session, contributor_id: int) -> Contributor:
    """The contributor with this id; :class:`NotFoundError` when there is none."""
    contributor = session.get(Contributor, contributor_id)
    if contributor is None:
        raise NotFoundError(f"no contributor with id {contributor_id}")
    return contributor


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


def _answers(project_id: int, *columns: Any) -> Select[Any]:
    """The query of ``columns`` over every response of a project (with its task, item and
    contributor) that is not a skip, oldest first."""
    return (
        select(*columns)
        .join(Task, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .join(Contributor, Response.contributor_id == Contributor.id)
        .where(Item.project_id == project_id, Response.skipped == false())
        .order_by(Response.id)
    )


def _votes(project_id: int, *columns: Any) -> Select[Any]:
    """The query of ``columns`` over every vote of a project (its response, task, item and
    voter), oldest first."""
    return _answers(project_id, *columns).where(Response.verdict.is_not(None))


def project_comparisons(session: Session, project_id: int) -> list[Comparison]:
    """Every vote of a project as a :class:`~crowdtune.records.Comparison`, oldest first.

    ``id`` is ``"{item}/{contributor}"`` (the item's external id, else ``item-{id}``),
    ``annotator`` the contributor's name and ``source`` the project's name, so the records go
    straight to :func:`crowdtune.datasets.comparisons.write_jsonl` and the other writers.
    """
    project = get_project(session, project_id)
    rows = session.execute(_votes(project_id, Response.verdict, Item, Contributor.name)).all()
    return [
        _as_comparison(item, verdict, project.name, annotator=name) for verdict, item, name in rows
    ]


def _as_comparison(
    item: Item, verdict: Verdict, source: str, *, annotator: str | None = None
) -> Comparison:
    """An item with a verdict as a record: ``id`` is the item's external id (else
    ``item-{id}``), followed by ``/{annotator}`` for a vote."""
    ident = item.external_id or f"item-{item.id}"
    return Comparison(
        id=ident if annotator is None else f"{ident}/{annotator}",
        prompt=tuple(item.prompt),
        response_a=tuple(item.response_a),
        response_b=tuple(item.response_b or ()),
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
    #: Tasks closed with a skip (counted in ``responses``; their items went back to the pool).
    skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def progress(session: Session, project_id: int) -> Progress:
    """Counts of a project's items, tasks, responses (skips among them) and completed items
    (items with ``overlap`` answers that are not skips)."""
    project = get_project(session, project_id)
    in_project = Item.project_id == project_id
    items = session.scalar(select(func.count(Item.id)).where(in_project)) or 0
    tasks = session.scalar(select(func.count(Task.id)).join(Item).where(in_project)) or 0
    closed = (
        select(Response.skipped, func.count(Response.id))
        .join(Task, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .where(in_project)
        .group_by(Response.skipped)
    )
    by_skip = {bool(skipped): count for skipped, count in session.execute(closed)}
    answered = (
        select(Task.item_id)
        .join(Response, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .where(in_project, Response.skipped == false())
        .group_by(Task.item_id)
        .having(func.count(Response.id) >= project.overlap)
        .subquery()
    )
    complete = session.scalar(select(func.count()).select_from(answered)) or 0
    responses = by_skip.get(False, 0) + by_skip.get(True, 0)
    return Progress(
        items=items,
        tasks=tasks,
        responses=responses,
        open_tasks=tasks - responses,
        items_complete=complete,
        overlap=project.overlap,
        skipped=by_skip.get(True, 0),
    )


def answered_count(session: Session, project_id: int, contributor_id: int) -> int:
    """How many tasks of a project the contributor has closed (answers and skips)."""
    return (
        session.scalar(
            select(func.count(Response.id))
            .join(Task, Response.task_id == Task.id)
            .join(Item, Task.item_id == Item.id)
            .where(Item.project_id == project_id, Response.contributor_id == contributor_id)
        )
        or 0
    )


def _record_id(item: Item, annotator: str) -> str:
    return f"{item.external_id or f'item-{item.id}'}/{annotator}"


def project_revisions(session: Session, project_id: int) -> list[Revision]:
    """Every revision of a revision project as a :class:`~crowdtune.records.Revision`, oldest
    first: ``id`` ``"{item}/{contributor}"`` (the item's external id, else ``item-{id}``),
    ``original`` the item's response, ``reference`` its gold revision (if any), ``source`` the
    project's name. Skips are not revisions (see :func:`project_skips`).

    Raises
    ------
    NotFoundError
        No such project.
    """
    project = get_project(session, project_id)
    columns = (Response.revision, Item, Contributor.name)
    rows = session.execute(_answers(project_id, *columns).where(Response.revision.is_not(None)))
    return [
        Revision(
            id=_record_id(item, name),
            prompt=tuple(item.prompt),
            original=item.response_a[-1],
            revised=revised,
            contributor=name,
            source=project.name,
            reference=item.reference,
        )
        for revised, item, name in rows
    ]


def project_ratings(session: Session, project_id: int) -> list[Rating]:
    """Every rating of a rating project as a :class:`~crowdtune.records.Rating` on the
    project's scale, oldest first (``id`` as in :func:`project_revisions`).

    Raises
    ------
    NotFoundError
        No such project.
    """
    project = get_project(session, project_id)
    scale = project.scale or (1, 7)
    columns = (Response.score, Response.aspects, Item, Contributor.name)
    rows = session.execute(_answers(project_id, *columns).where(Response.score.is_not(None)))
    return [
        Rating(
            id=_record_id(item, name),
            prompt=tuple(item.prompt),
            response=item.response_a[-1],
            score=score,
            scale=(float(scale[0]), float(scale[1])),
            aspects=aspects,
            contributor=name,
            source=project.name,
        )
        for score, aspects, item, name in rows
    ]


@dataclass(frozen=True)
class Skip:
    """A task closed without an answer, and why."""

    item_id: int
    contributor: str
    reason: str | None


def project_skips(session: Session, project_id: int) -> list[Skip]:
    """Every skip of a project, oldest first."""
    get_project(session, project_id)
    rows = session.execute(
        select(Item.id, Contributor.name, Response.reason)
        .join(Task, Response.task_id == Task.id)
        .join(Item, Task.item_id == Item.id)
        .join(Contributor, Response.contributor_id == Contributor.id)
        .where(Item.project_id == project_id, Response.skipped.is_(True))
        .order_by(Response.id)
    )
    return [Skip(*row) for row in rows]


@dataclass(frozen=True)
class SingleGold:
    """A revision or rating item's gold answer: its text, and the reference revision or the
    accepted scores."""

    item_id: int
    prompt: str
    response: str
    reference: str | None
    low: float | None
    high: float | None


def project_single_gold(session: Session, project_id: int) -> list[SingleGold]:
    """The gold answers of a revision or rating project's items (a reference revision, or the
    accepted score range), in item order; the prompt's turns joined with
    :data:`~crowdtune.records.TURN_SEPARATOR`."""
    get_project(session, project_id)
    items = session.scalars(
        select(Item)
        .where(
            Item.project_id == project_id,
            Item.reference.is_not(None) | Item.gold_low.is_not(None),
        )
        .order_by(Item.id)
    )
    return [
        SingleGold(
            item.id, join_turns(item.prompt), item.response_a[-1], item.reference,
            item.gold_low, item.gold_high,
        )
        for item in items
    ]  # fmt: skip


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
    columns = (Response.id, Item.id, Contributor.id, Contributor.name, Response.verdict, Item.gold)
    rows = session.execute(_votes(project_id, *columns)).all()
    return [Vote(*row) for row in rows]


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


def project_item_keys(
    session: Session, project_id: int
) -> set[tuple[tuple[str, ...], frozenset[str]]]:
    """What the project's items already answer: each item's prompt turns with the set of its
    models' names (``model_a`` and ``model_b`` where known), so a generator can skip a prompt
    the same models answered before, whichever of them was shown as A.

    Raises
    ------
    NotFoundError
        No such project.
    """
    get_project(session, project_id)
    rows = session.execute(
        select(Item.prompt, Item.model_a, Item.model_b).where(Item.project_id == project_id)
    )
    return {
        (tuple(prompt), frozenset(name for name in (model_a, model_b) if name is not None))
        for prompt, model_a, model_b in rows
    }


def project_round_count(session: Session, project_id: int) -> int:
    """How many rounds the project has stored (without loading them)."""
    return session.scalar(select(func.count(Round.id)).where(Round.project_id == project_id)) or 0


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
