"""Repository answers: the vote, revision, score or skip that closes a task.

:func:`submission` checks what a client sent (no database needed); :func:`record_answer`
stores it in a few SQLAlchemy Core statements on a :class:`~sqlalchemy.Connection`, inside a
write transaction its caller owns (the server's group commit,
:class:`crowdtune.store.group_commit.GroupCommit`); :func:`submit_response` does both in a
transaction of its own for callers holding a :class:`~sqlalchemy.orm.Session`, and commits.
Idempotent per contributor and key."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crowdtune.records import Verdict, check_score
from crowdtune.store.db import retrying
from crowdtune.store.errors import (
    ConflictError,
    ForbiddenError,
    LostRaceError,
    NotFoundError,
    ReusedKeyError,
)
from crowdtune.store.models import Item, Project, Response, Task, utc_now
from crowdtune.store.repository.writes import (
    MAX_LABEL,
    MAX_NAME,
    CoreRow,
    check_name,
    inserted_id,
    writing,
)
from crowdtune.validation import check_text

#: Longest revised answer, in characters (a long answer of an assistant is a few thousand).
MAX_REVISION = 20_000
#: Most named aspect scores a rating may carry.
MAX_ASPECTS = 20


@dataclass(frozen=True)
class Answer:
    """What closes a task: exactly one of a vote, a revised answer, a score (with optional
    aspect scores) or a skip. Built and checked by :func:`answer`."""

    verdict: Verdict | None = None
    revision: str | None = None
    score: float | None = None
    aspects: dict[str, float] | None = None
    skipped: bool = False

    @property
    def kind(self) -> str:
        """The project kind this answer belongs to (``skip`` for a skip, which any kind takes)."""
        if self.skipped:
            return "skip"
        if self.verdict is not None:
            return "pairwise"
        return "revision" if self.revision is not None else "rating"


#: The field a client sends for each kind of answer.
ANSWER_FIELD = {"pairwise": "verdict", "revision": "revision", "rating": "score"}


def answer(
    *,
    verdict: Verdict | str | int | None = None,
    revision: str | None = None,
    score: float | None = None,
    aspects: Mapping[str, float] | None = None,
    skipped: bool = False,
) -> Answer:
    """Check the answer a submission carries (the scale is checked against the project later).

    Raises
    ------
    ValueError
        None or more than one of ``verdict``, ``revision``, ``score`` and ``skipped``; a bad
        verdict; an empty or too long revision (:data:`MAX_REVISION`), or one with a NUL or lone
        surrogate; a score that is not a finite number; aspects without a score, too many, or
        with bad names or values.
    """
    given = [name for name, v in (("verdict", verdict), ("revision", revision),
                                  ("score", score)) if v is not None]  # fmt: skip
    if skipped:
        given.append("skip")
    if len(given) != 1:
        raise ValueError(
            "send exactly one of 'verdict' (pairwise), 'revision' (revision), 'score' (rating) "
            f"or a skip, got {given or 'none'}"
        )
    if revision is not None:
        if not isinstance(revision, str) or not revision.strip():
            raise ValueError("revision must be a non-empty text")
        if len(revision) > MAX_REVISION:
            raise ValueError(
                f"revision must be at most {MAX_REVISION} characters, got {len(revision)}"
            )
        check_text(revision, "revision")
    if score is not None:
        score = check_score(score, (-math.inf, math.inf), "score")
    if aspects is not None:
        if score is None:
            raise ValueError("aspects go with a score")
        if not isinstance(aspects, Mapping) or len(aspects) > MAX_ASPECTS:
            raise ValueError(f"aspects must be at most {MAX_ASPECTS} name: score pairs")
        aspects = {
            check_name(name, "aspect name", MAX_NAME): check_score(
                value, (-math.inf, math.inf), f"aspects.{name}"
            )
            for name, value in aspects.items()
        }
    return Answer(
        verdict=None if verdict is None else Verdict.parse(verdict),
        revision=revision,
        score=score,
        aspects=None if aspects is None else dict(aspects),
        skipped=bool(skipped),
    )


def _fits_project(given: Answer, kind: str, scale: tuple[int, int] | None) -> None:
    """Raise ``ValueError`` naming the field unless the answer suits the project's ``kind``
    (and a score its ``scale``: a whole number from the lowest to the highest score)."""
    if given.kind not in ("skip", kind):
        field = ANSWER_FIELD[kind]
        raise ValueError(f"this is a {kind} task: send {field!r}, not {ANSWER_FIELD[given.kind]!r}")
    if scale is None:
        return
    low, high = scale
    for where, value in [("score", given.score), *(
        (f"aspects.{name}", v) for name, v in (given.aspects or {}).items())
    ]:  # fmt: skip
        if value is not None and (value != int(value) or not low <= value <= high):
            raise ValueError(
                f"{where} must be a whole number from {low} to {high} (the project's scale), "
                f"got {value:g}"
            )


@dataclass(frozen=True)
class Submission:
    """A checked submission (:func:`submission`): the answer, the optional reason and seconds,
    and the idempotency key it is stored under."""

    given: Answer
    reason: str | None
    seconds: float | None
    key: str


@dataclass(frozen=True)
class StoredAnswer:
    """A stored response as :func:`record_answer` returns it, detached from any session."""

    id: int
    task_id: int
    verdict: Verdict | None
    revision: str | None
    score: float | None
    aspects: dict[str, float] | None
    skipped: bool


def submission(
    *,
    verdict: Verdict | str | int | None = None,
    revision: str | None = None,
    score: float | None = None,
    aspects: Mapping[str, float] | None = None,
    skipped: bool = False,
    reason: str | None = None,
    seconds: float | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Check a submission before it meets the database: the answer (:func:`answer`), the
    reason, the seconds and the key (None: a fresh random key, which makes the call
    non-repeatable). Raises ``ValueError`` naming the field (see :func:`submit_response`)."""
    given = answer(
        verdict=verdict, revision=revision, score=score, aspects=aspects, skipped=skipped
    )
    if reason is not None:
        check_text(reason, "reason")
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise ValueError(f"seconds must be a finite number of at least 0, got {seconds!r}")
    key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
    return Submission(given, reason, seconds, check_name(key, "idempotency key", MAX_LABEL))


def _changed_fields(stored: CoreRow, sent: Submission) -> list[str]:
    """The fields of a submission that differ from the response stored under its key."""
    given = sent.given
    mine = {
        "verdict": given.verdict, "revision": given.revision, "score": given.score,
        "aspects": given.aspects, "skip": given.skipped, "reason": sent.reason,
        "seconds": sent.seconds,
    }  # fmt: skip
    kept = {
        "verdict": stored.verdict, "revision": stored.revision, "score": stored.score,
        "aspects": stored.aspects, "skip": stored.skipped, "reason": stored.reason,
        "seconds": stored.seconds_spent,
    }  # fmt: skip
    return [field for field in mine if mine[field] != kept[field]]


# The statements of an answer, built once with bound parameters (see assignment's).
#: The stored response under a contributor's key, with what a replay compares and returns.
_BY_KEY = select(
    Response.id, Response.task_id, Response.verdict, Response.revision, Response.score,
    Response.aspects, Response.skipped, Response.reason, Response.seconds_spent,
).where(
    Response.contributor_id == bindparam("contributor"),
    Response.idempotency_key == bindparam("key"),
)  # fmt: skip
#: The task with its item's project: the answer is checked against its kind and scale, and a
#: vote must not pay two more round trips.
_TASK = (
    select(Task.contributor_id, Task.item_id, Task.answered, Item.project_id, Project.kind,
           Project.scale_min, Project.scale_max)
    .join(Item, Task.item_id == Item.id)
    .join(Project, Item.project_id == Project.id)
    .where(Task.id == bindparam("task"))
)  # fmt: skip
_ANSWER_OF_TASK = select(Response.id).where(Response.task_id == bindparam("task"))
_ADD_RESPONSE = insert(Response)
_MARK_ANSWERED = update(Task).where(Task.id == bindparam("task")).values(answered=True)
# A skip gives the item back to the pool: someone else may take the place.
_RELEASE_ITEM = update(Item).where(Item.id == bindparam("item")).values(assigned=Item.assigned - 1)


def _stored_answer(row: CoreRow) -> StoredAnswer:
    return StoredAnswer(row.id, row.task_id, row.verdict, row.revision, row.score, row.aspects,
                        bool(row.skipped))  # fmt: skip


def _record_once(
    connection: Connection, task_id: int, contributor_id: int, sent: Submission,
    project_id: int | None,
) -> tuple[StoredAnswer, bool]:  # fmt: skip
    key = sent.key
    stored = connection.execute(_BY_KEY, {"contributor": contributor_id, "key": key}).first()
    if stored is not None and stored.task_id != task_id:
        raise ConflictError(
            f"idempotency key {key!r} was used for task {stored.task_id}, not "
            f"{task_id}; use a new key for each submission"
        )
    task = connection.execute(_TASK, {"task": task_id}).first()
    if task is None or (project_id is not None and task.project_id != project_id):
        where = "" if project_id is None else f" in project {project_id}"
        raise NotFoundError(f"no task with id {task_id}{where}")
    if stored is not None:
        if changed := _changed_fields(stored, sent):
            raise ReusedKeyError(
                f"idempotency key {key!r} was sent before with a different "
                f"{', '.join(changed)}; send the first body again to get its reply, "
                "or use a new key for a new submission"
            )
        return _stored_answer(stored), False
    if task.contributor_id != contributor_id:
        raise ForbiddenError(f"task {task_id} is assigned to another contributor")
    scale = None if task.scale_min is None else (task.scale_min, task.scale_max)
    _fits_project(sent.given, task.kind, scale)
    if task.answered:
        answered = connection.scalar(_ANSWER_OF_TASK, {"task": task_id})
        raise ConflictError(
            f"task {task_id} was answered already (response {answered}, under another "
            "idempotency key)"
        )
    given = sent.given
    try:
        added = connection.execute(
            _ADD_RESPONSE,
        {"task_id": task_id, "contributor_id": contributor_id, "verdict": given.verdict,
         "revision": given.revision, "score": given.score, "aspects": given.aspects,
         "skipped": given.skipped, "reason": sent.reason, "seconds_spent": sent.seconds,
             "idempotency_key": key, "created_at": utc_now()},
        )  # fmt: skip
    except IntegrityError:
        # A concurrent submission won: the next attempt finds it (same key) or reports it.
        raise LostRaceError(f"task {task_id} was answered concurrently under another key") from None
    connection.execute(_MARK_ANSWERED, {"task": task_id})
    if given.skipped:
        connection.execute(_RELEASE_ITEM, {"item": task.item_id})
    answer_id = inserted_id(added)
    return StoredAnswer(answer_id, task_id, given.verdict, given.revision, given.score,
                        given.aspects, given.skipped), True  # fmt: skip


def record_answer(
    connection: Connection,
    task_id: int,
    contributor_id: int,
    sent: Submission,
    *,
    project_id: int | None = None,
) -> tuple[StoredAnswer, bool]:
    """Store a checked submission (:func:`submission`) that closes one of the contributor's
    tasks, in the write transaction open on ``connection`` (the caller commits it; nothing is
    acknowledged before). Returns the stored answer, and whether this call stored it (False:
    the key was seen before with the same body, and nothing was stored).

    A first submission costs four statements (five for a skip): the key, the task with its
    item's project, the response, the task's ``answered`` flag. Run it through
    :func:`~crowdtune.store.db.retrying` (the group commit and :func:`submit_response` do):
    when a concurrent submission (another process on PostgreSQL) stored the task's response
    first, the unique constraint makes this attempt raise
    :class:`~crowdtune.store.errors.LostRaceError`, its savepoint rolls back, and the next
    attempt finds that response (same key: a replay) or reports it (409).

    Raises what :func:`submit_response` raises, but for the checks of :func:`submission`.
    """
    return _record_once(connection, task_id, contributor_id, sent, project_id)


def submit_response(
    session: Session,
    task_id: int,
    contributor_id: int,
    *,
    verdict: Verdict | str | int | None = None,
    revision: str | None = None,
    score: float | None = None,
    aspects: Mapping[str, float] | None = None,
    skipped: bool = False,
    reason: str | None = None,
    seconds: float | None = None,
    idempotency_key: str | None = None,
    project_id: int | None = None,
) -> tuple[Response, bool]:
    """Store the answer that closes a task; idempotent per (contributor, key). Commits.

    :func:`submission` then :func:`record_answer`, in a transaction of its own on ``session``;
    the stored response comes back as a :class:`~crowdtune.store.models.Response`.

    Parameters
    ----------
    verdict, revision, score, skipped
        The answer, exactly one of them, matching the project's kind: a ``verdict`` (``'a'``,
        ``'b'``, ``'tie'`` in any case, 0/1/2 or a :class:`Verdict`) for a pairwise task, a
        ``revision`` (the rewritten answer; may equal the original) for a revision task, a
        ``score`` (a whole number on the project's scale) for a rating task; or
        ``skipped=True`` for any task, which closes the task without an answer and gives the
        item back to the pool for someone else (say why in ``reason``).
    aspects
        With a score: scores of named aspects on the same scale.
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
        A bad answer (see :func:`answer`), one that does not suit the project's kind, a score
        off its scale, negative or non-finite seconds, a key longer than 200 characters, or a
        NUL or lone surrogate in the reason or the key. The message names the field.
    ReusedKeyError
        The key was sent before with a different body (a ``ValueError`` too); nothing is
        stored.
    NotFoundError
        No such task (in ``project_id``, when given).
    ForbiddenError
        The task belongs to another contributor.
    ConflictError
        The task has a response under another key, or this key was used for another task.
    """
    sent = submission(
        verdict=verdict, revision=revision, score=score, aspects=aspects, skipped=skipped,
        reason=reason, seconds=seconds, idempotency_key=idempotency_key,
    )  # fmt: skip
    with writing(session):
        stored, created = retrying(
            session.connection(),
            lambda connection: record_answer(
                connection, task_id, contributor_id, sent, project_id=project_id
            ),
        )
        session.commit()
    response = session.get(Response, stored.id)
    assert response is not None
    return response, created
