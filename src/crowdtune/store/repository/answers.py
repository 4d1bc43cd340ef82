"""Repository answers: the vote, revision, score or skip that closes a task
(:func:`submit_response`, idempotent per contributor and key; it commits)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from crowdtune.records import Verdict, check_score
from crowdtune.store.errors import ConflictError, ForbiddenError, NotFoundError, ReusedKeyError
from crowdtune.store.models import Item, Project, Response, Task
from crowdtune.store.repository.writes import MAX_LABEL, MAX_NAME, check_name, writing
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


def _fits_project(given: Answer, project: Project) -> None:
    """Raise ``ValueError`` naming the field unless the answer suits the project's kind (and a
    score its scale: a whole number from the lowest to the highest score)."""
    if given.kind not in ("skip", project.kind):
        field = ANSWER_FIELD[project.kind]
        raise ValueError(
            f"this is a {project.kind} task: send {field!r}, not {ANSWER_FIELD[given.kind]!r}"
        )
    if project.scale is None:
        return
    low, high = project.scale
    for where, value in [("score", given.score), *(
        (f"aspects.{name}", v) for name, v in (given.aspects or {}).items())
    ]:  # fmt: skip
        if value is not None and (value != int(value) or not low <= value <= high):
            raise ValueError(
                f"{where} must be a whole number from {low} to {high} (the project's scale), "
                f"got {value:g}"
            )


def _changed_fields(
    stored: Response, given: Answer, reason: str | None, seconds: float | None
) -> list[str]:
    """The fields of a submission that differ from the response stored under its key."""
    sent = {
        "verdict": given.verdict, "revision": given.revision, "score": given.score,
        "aspects": given.aspects, "skip": given.skipped, "reason": reason, "seconds": seconds,
    }  # fmt: skip
    kept = {
        "verdict": stored.verdict, "revision": stored.revision, "score": stored.score,
        "aspects": stored.aspects, "skip": stored.skipped, "reason": stored.reason,
        "seconds": stored.seconds_spent,
    }  # fmt: skip
    return [field for field in sent if sent[field] != kept[field]]


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
    given = answer(
        verdict=verdict, revision=revision, score=score, aspects=aspects, skipped=skipped
    )
    if reason is not None:
        check_text(reason, "reason")
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise ValueError(f"seconds must be a finite number of at least 0, got {seconds!r}")
    key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
    key = check_name(key, "idempotency key", MAX_LABEL)
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
            # The item and its project come in the same query: the answer is checked against
            # the project's kind and scale, and a vote must not pay two more round trips.
            task = session.get(
                Task, task_id, options=[joinedload(Task.item).joinedload(Item.project)]
            )
            if task is None or (project_id is not None and task.item.project_id != project_id):
                where = "" if project_id is None else f" in project {project_id}"
                raise NotFoundError(f"no task with id {task_id}{where}")
            if stored is not None:
                if changed := _changed_fields(stored, given, reason, seconds):
                    raise ReusedKeyError(
                        f"idempotency key {key!r} was sent before with a different "
                        f"{', '.join(changed)}; send the first body again to get its reply, "
                        "or use a new key for a new submission"
                    )
                session.commit()
                return stored, False
            if task.contributor_id != contributor_id:
                raise ForbiddenError(f"task {task_id} is assigned to another contributor")
            _fits_project(given, task.item.project)
            answered = session.scalar(select(Response).where(Response.task_id == task_id))
            if answered is not None:
                raise ConflictError(
                    f"task {task_id} was answered already (response {answered.id}, under another "
                    "idempotency key)"
                )
            response = Response(
                task_id=task_id,
                contributor_id=contributor_id,
                verdict=given.verdict,
                revision=given.revision,
                score=given.score,
                aspects=given.aspects,
                skipped=given.skipped,
                reason=reason,
                seconds_spent=seconds,
                idempotency_key=key,
            )
            session.add(response)
            task.answered = True
            if given.skipped:
                # The item goes back to the pool: someone else may take the place.
                session.execute(
                    update(Item)
                    .where(Item.id == task.item_id)
                    .values(assigned=Item.assigned - 1)
                    .execution_options(synchronize_session=False)
                )
            try:
                session.commit()
            except IntegrityError:
                # A concurrent submission won; the next pass finds it (same key) or reports it.
                session.rollback()
                continue
            return response, True
    raise ConflictError(f"task {task_id} was answered concurrently under another key")
