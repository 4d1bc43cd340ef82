"""The tables of the feedback store, as SQLAlchemy 2 declarative models.

``contributor`` (people, with a role, the SHA-256 of their token and when that token expires or
was revoked), ``session`` (a signed-in browser: the SHA-256 of its random id, when it ends),
``project`` (a set of
items and the overlap *k*: how many distinct people see each item; its kind says what they do:
``pairwise`` compares two answers, ``revision`` rewrites one, ``rating`` scores one on the
project's scale), ``item`` (one prompt and two responses, or one response for the
single-response kinds), ``task`` (an item handed to one contributor; never twice to the same
one), ``response`` (one per task: a vote, a revised text, a score, or a skip with its reason)
``round`` (results of Crowd-SFT rounds), ``job`` (work a worker runs outside the web process:
rounds that train) and ``model_version`` (the lineage of models the rounds trained).

Turns are stored as JSON lists of strings, like :class:`~crowdtune.records.Comparison` holds
them; verdicts as ``'a'``, ``'b'`` or ``'tie'`` (:class:`VerdictType` maps them to
:class:`~crowdtune.records.Verdict`). Every table has an integer ``id`` and a timezone-aware
``created_at``. The migrations in ``migrations/versions`` create exactly this schema (a test
compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from crowdtune.records import Verdict

#: Contributor roles: admins create projects and users, annotators vote.
ROLES = ("admin", "annotator")
#: Project kinds: compare two answers (A / B / tie), score one on a scale, or rewrite one.
PROJECT_KINDS = ("pairwise", "rating", "revision")
#: Kinds whose items hold one response (in ``item.response_a``; ``response_b`` is NULL).
SINGLE_RESPONSE_KINDS = ("rating", "revision")
#: How assignment orders the items: ``depth`` gives a contributor an item others have started
#: (items complete steadily, agreement appears early); ``breadth`` the least assigned item first
#: (every item gets a first answer before any gets a second).
ASSIGNMENT_ORDERS = ("depth", "breadth")
#: How a verdict is spelled in the database.
VERDICT_CODES = {Verdict.A: "a", Verdict.B: "b", Verdict.TIE: "tie"}

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class VerdictType(TypeDecorator[Verdict]):
    """A :class:`~crowdtune.records.Verdict` stored as ``'a'``, ``'b'`` or ``'tie'``."""

    impl = String(3)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else VERDICT_CODES[Verdict.parse(value)]

    def process_result_value(self, value: Any, dialect: Dialect) -> Verdict | None:
        return None if value is None else Verdict.parse(value)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, timezone-aware; a naive one is taken to be UTC already.

    >>> as_utc(datetime(2026, 1, 1, 12)).isoformat()
    '2026-01-01T12:00:00+00:00'
    """
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends.

    SQLite has no time zones: SQLAlchemy stores the wall time and gives it back naive. Values
    are turned to UTC before they are stored (a naive one is taken as UTC) and come back aware,
    so Python compares them with :func:`utc_now` and SQL compares them with each other.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def _verdict_check(column: str) -> CheckConstraint:
    codes = ", ".join(f"'{code}'" for code in VERDICT_CODES.values())
    return CheckConstraint(f"{column} IN ({codes})", name=f"{column}_valid")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Contributor(Base):
    """A person who gives feedback (annotator) or runs projects (admin)."""

    __tablename__ = "contributor"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'annotator')", name="role_valid"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # SHA-256 hex of the bearer token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # When the token stops working (None: never) and when it was revoked (None: it was not).
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    def __repr__(self) -> str:
        return f"Contributor(id={self.id!r}, name={self.name!r}, role={self.role!r})"


class WebSession(Base):
    """A browser signed in with a contributor's token (the ``session`` table).

    The cookie carries a random id; only its SHA-256 is stored. The session ends at
    ``expires_at`` (absolute), when unused for the server's idle timeout since
    ``last_seen_at``, at sign-out (the row is deleted) and when the token is revoked or rotated.
    """

    __tablename__ = "session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contributor_id: Mapped[int] = mapped_column(ForeignKey("contributor.id"), index=True)
    # SHA-256 hex of the id the cookie carries.
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def __repr__(self) -> str:
        return f"WebSession(id={self.id!r}, contributor_id={self.contributor_id!r})"


class Project(Base):
    """A set of items, each to be judged by ``overlap`` distinct contributors."""

    __tablename__ = "project"
    __table_args__ = (
        CheckConstraint("kind IN ('pairwise', 'rating', 'revision')", name="kind_valid"),
        CheckConstraint("overlap >= 1", name="overlap_positive"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("assignment IN ('depth', 'breadth')", name="assignment_valid"),
        # A rating project has a scale, lowest first; the other kinds have none.
        CheckConstraint(
            "(kind = 'rating' AND scale_min IS NOT NULL AND scale_max > scale_min) OR "
            "(kind != 'rating' AND scale_min IS NULL AND scale_max IS NULL)",
            name="scale_valid",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="pairwise")
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    # The whole-number scores a rating project accepts, from scale_min to scale_max.
    scale_min: Mapped[int | None] = mapped_column(Integer)
    scale_max: Mapped[int | None] = mapped_column(Integer)
    assignment: Mapped[str] = mapped_column(String(16), default="depth", server_default="depth")
    # Revision projects: the editor starts with the answer (True) or empty (False).
    editor_prefill: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The model the project's first Crowd-SFT round of language models starts from ("tiny",
    # "smollm2", a folder or a hub name); later rounds start from the lineage's base.
    base_model: Mapped[str] = mapped_column(String(500), default="tiny", server_default="tiny")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    items: Mapped[list[Item]] = relationship(back_populates="project")

    def __repr__(self) -> str:
        return f"Project(id={self.id!r}, name={self.name!r}, overlap={self.overlap!r})"

    @property
    def scale(self) -> tuple[int, int] | None:
        """``(lowest, highest)`` score of a rating project; None for the other kinds."""
        if self.scale_min is None or self.scale_max is None:
            return None
        return self.scale_min, self.scale_max


class Item(Base):
    """One prompt and two responses to compare, or (rating and revision projects) one response
    in ``response_a`` with ``response_b`` NULL; turns as JSON lists of strings.

    Gold answers, for quality checks: ``gold`` (a verdict) for a pairwise item, ``reference`` (a
    known good revision) for a revision item, ``gold_low``..``gold_high`` (the accepted scores)
    for a rating item.
    """

    __tablename__ = "item"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        _verdict_check("gold"),
        CheckConstraint(
            "(gold_low IS NULL AND gold_high IS NULL) OR gold_high >= gold_low",
            name="gold_range_valid",
        ),
        # Assignment walks this index: the least assigned items of a project first.
        Index("ix_item_project_id_assigned_id", "project_id", "assigned", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    prompt: Mapped[list[str]] = mapped_column(JSON)
    response_a: Mapped[list[str]] = mapped_column(JSON)
    # SQL NULL (not JSON null) for the single-response kinds.
    response_b: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    model_a: Mapped[str | None] = mapped_column(String(200))
    model_b: Mapped[str | None] = mapped_column(String(200))
    # The known answer, for quality checks and scoring candidates; None for most items.
    gold: Mapped[Verdict | None] = mapped_column(VerdictType)
    reference: Mapped[str | None] = mapped_column(Text)
    gold_low: Mapped[float | None] = mapped_column(Float)
    gold_high: Mapped[float | None] = mapped_column(Float)
    # The id the item had in its source file (unique within the project when given).
    external_id: Mapped[str | None] = mapped_column(String(200))
    # How many tasks the item has: kept by assignment in the transaction that adds a task, so
    # choosing the next item reads one index instead of counting every item's tasks.
    assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    project: Mapped[Project] = relationship(back_populates="items")

    def __repr__(self) -> str:
        return f"Item(id={self.id!r}, project_id={self.project_id!r})"


class Task(Base):
    """An item handed to one contributor; open until its :class:`Response` arrives."""

    __tablename__ = "task"
    # An item never goes twice to the same person.
    __table_args__ = (
        UniqueConstraint("item_id", "contributor_id"),
        Index(None, "contributor_id"),
        # A contributor's open tasks, found without reading the answered ones.
        Index("ix_task_contributor_id_answered", "contributor_id", "answered"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    contributor_id: Mapped[int] = mapped_column(ForeignKey("contributor.id"))
    # Set in the transaction that stores the task's response.
    answered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    item: Mapped[Item] = relationship()
    contributor: Mapped[Contributor] = relationship()
    response: Mapped[Response | None] = relationship(back_populates="task")

    def __repr__(self) -> str:
        return (
            f"Task(id={self.id!r}, item_id={self.item_id!r}, contributor={self.contributor_id!r})"
        )


class Response(Base):
    """What closes a task (one per task): a vote (``verdict``), a revised answer
    (``revision``), a score (``score``, with optional ``aspects`` scores), or a skip
    (``skipped``; the ``reason`` says why, and the item goes back to the pool)."""

    __tablename__ = "response"
    __table_args__ = (
        # A retried submission with the same key finds the stored response.
        UniqueConstraint("contributor_id", "idempotency_key"),
        _verdict_check("verdict"),
        # Exactly one kind of answer.
        CheckConstraint(
            "(CASE WHEN verdict IS NULL THEN 0 ELSE 1 END) + "
            "(CASE WHEN revision IS NULL THEN 0 ELSE 1 END) + "
            "(CASE WHEN score IS NULL THEN 0 ELSE 1 END) + "
            "(CASE WHEN skipped THEN 1 ELSE 0 END) = 1",
            name="one_answer",
        ),
        CheckConstraint("seconds_spent IS NULL OR seconds_spent >= 0", name="seconds_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), unique=True)
    # The task's contributor, repeated so that idempotency keys are unique per person.
    contributor_id: Mapped[int] = mapped_column(ForeignKey("contributor.id"))
    verdict: Mapped[Verdict | None] = mapped_column(VerdictType)
    revision: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    aspects: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))
    skipped: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str | None] = mapped_column(Text)
    seconds_spent: Mapped[float | None] = mapped_column()
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    task: Mapped[Task] = relationship(back_populates="response")

    def __repr__(self) -> str:
        return f"Response(id={self.id!r}, task_id={self.task_id!r}, verdict={self.verdict!r})"


class Round(Base):
    """The outcome of one Crowd-SFT round of a project: its candidates, winner and points live
    in ``details``; ``candidate`` says what the groups trained (``preference`` models, ``sft``
    or ``dpo`` language models). ``job_id`` is the job that ran it: unique, so a job that is
    retried after its round was stored cannot store it twice."""

    __tablename__ = "round"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    candidate: Mapped[str] = mapped_column(
        String(16), default="preference", server_default="preference"
    )
    job_id: Mapped[int | None] = mapped_column(Integer, index=True, unique=True)
    strategy: Mapped[str] = mapped_column(String(100))
    scheme: Mapped[str] = mapped_column(String(100))
    winner: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    def __repr__(self) -> str:
        return f"Round(id={self.id!r}, project_id={self.project_id!r}, winner={self.winner!r})"


#: The states of a job: waiting, claimed by a worker, and the three ends.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
#: States a job never leaves.
JOB_FINAL_STATES = ("succeeded", "failed", "cancelled")


class Job(Base):
    """Work that runs in a worker, never in a web request (a Crowd-SFT round that trains).

    A worker claims a ``queued`` job (``running``, ``attempts`` + 1, its name in ``worker``),
    writes ``progress`` (0-1), ``message`` and ``heartbeat_at`` as it goes, and ends it
    ``succeeded`` with a ``result``, ``failed`` with a message, or ``cancelled`` once
    ``cancel_requested`` is seen. A running job whose heartbeat lapses (its worker was killed)
    goes back to ``queued`` while attempts are left, else to ``failed``.
    """

    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="state_valid",
        ),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_valid"),
        Index("ix_job_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    worker: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, state={self.state!r})"


class ModelVersion(Base):
    """A model of a project's lineage: the base the first round started from (no round), and
    every candidate a Crowd-SFT round of language models trained (``path``: its folder).
    ``parent`` names the model it was trained from; exactly one model of a project with a
    lineage ``is_base``: the one the next round starts from and new items are answered by."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id"))
    round_number: Mapped[int | None] = mapped_column(Integer)
    group: Mapped[int | None] = mapped_column(Integer)
    parent: Mapped[str | None] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    winner: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_base: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)

    def __repr__(self) -> str:
        return f"ModelVersion(id={self.id!r}, name={self.name!r}, is_base={self.is_base!r})"
