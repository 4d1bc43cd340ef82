"""Repository functions: everything the server reads from and writes to the store.

Plain functions taking a SQLAlchemy :class:`~sqlalchemy.orm.Session` (from
:func:`crowdtune.store.session_factory`), called through this one facade
(``from crowdtune.store import repository as repo``; ``repo.next_task(...)``). They live in
these modules:

- :mod:`~crowdtune.store.repository.writes`: the write transaction (:func:`writing`),
  contributors, projects and rounds; :mod:`~crowdtune.store.repository.items`: items of the
  three kinds; :mod:`~crowdtune.store.repository.answers`: the vote, revision, score or skip
  that closes a task. Functions that write commit any transaction already open on the
  session, run their own, and **commit** it before they return, so a caller never
  acknowledges what is not stored; on an error they roll back and raise one of
  :mod:`crowdtune.store.errors` (or ``ValueError`` for malformed input), leaving nothing half
  written.
- :mod:`~crowdtune.store.repository.assignment`: :func:`next_task`, safe under concurrency on
  both backends: each item goes to at most ``overlap`` distinct contributors and never twice to
  the same one, however many annotators ask at once (PostgreSQL: row locks on the chosen item;
  SQLite: one writer at a time).
- :mod:`~crowdtune.store.repository.reads`: lookups and a project's votes, progress, gold
  items and rounds. Readers leave the session's transaction open.
- :mod:`~crowdtune.store.repository.sessions`: sign-in sessions (a random id stored hashed,
  with an absolute expiry and an idle timeout) and the token lifecycle (authenticate, revoke,
  rotate, expire); revoking or rotating a token ends its sessions.
- :mod:`~crowdtune.store.repository.jobs`: the job queue a worker claims from (enqueue, claim,
  heartbeat, cancel, end, requeue when a worker dies); :mod:`~crowdtune.store.repository.lineage`:
  a project's models and the one transaction that stores a round a job computed.

A function with more than three parameters takes the rest by keyword.
"""

from crowdtune.store.repository.answers import (
    ANSWER_FIELD,
    MAX_ASPECTS,
    MAX_REVISION,
    Answer,
    StoredAnswer,
    Submission,
    answer,
    record_answer,
    submission,
    submit_response,
)
from crowdtune.store.repository.assignment import ASSIGN_ATTEMPTS, AssignedTask, assign, next_task
from crowdtune.store.repository.items import (
    ITEM_FIELDS,
    SINGLE_ITEM_FIELDS,
    add_items,
    comparison_item,
    comparison_items,
    gold_rows,
    revision_item,
)
from crowdtune.store.repository.jobs import (
    BEAT_CANCEL,
    BEAT_LOST,
    BEAT_OK,
    Lapsed,
    beat,
    claim_job,
    enqueue_job,
    finish_job,
    get_job,
    project_jobs,
    request_cancel,
    requeue_lapsed,
)
from crowdtune.store.repository.lineage import (
    project_base_model,
    project_models,
    record_job_round,
)
from crowdtune.store.repository.reads import (
    Progress,
    SingleGold,
    Skip,
    Vote,
    answered_count,
    contributor_by_name,
    contributor_by_token,
    get_contributor,
    get_project,
    hash_token,
    list_projects,
    progress,
    project_by_name,
    project_comparisons,
    project_gold_items,
    project_item_keys,
    project_ratings,
    project_revisions,
    project_round_count,
    project_rounds,
    project_single_gold,
    project_skips,
    project_votes,
)
from crowdtune.store.repository.sessions import (
    SESSION_IDLE_TIMEOUT,
    SESSION_MAX_AGE,
    SessionPolicy,
    TokenListener,
    authenticate,
    end_session,
    on_token_change,
    revoke_token,
    rotate_token,
    session_contributor,
    set_token_expiry,
    start_session,
    token_refusal,
)
from crowdtune.store.repository.writes import (
    DEFAULT_RATING_SCALE,
    MAX_LABEL,
    MAX_NAME,
    create_contributor,
    create_project,
    record_round,
)

__all__ = [
    "BEAT_CANCEL",
    "BEAT_LOST",
    "BEAT_OK",
    "Lapsed",
    "beat",
    "claim_job",
    "enqueue_job",
    "finish_job",
    "get_job",
    "project_jobs",
    "request_cancel",
    "requeue_lapsed",
    "project_base_model",
    "project_models",
    "record_job_round",
    "ANSWER_FIELD",
    "ASSIGN_ATTEMPTS",
    "DEFAULT_RATING_SCALE",
    "MAX_ASPECTS",
    "MAX_REVISION",
    "SINGLE_ITEM_FIELDS",
    "Answer",
    "answer",
    "revision_item",
    "ITEM_FIELDS",
    "MAX_LABEL",
    "MAX_NAME",
    "SESSION_IDLE_TIMEOUT",
    "SESSION_MAX_AGE",
    "Progress",
    "SingleGold",
    "Skip",
    "answered_count",
    "project_ratings",
    "project_revisions",
    "project_single_gold",
    "project_skips",
    "SessionPolicy",
    "TokenListener",
    "Vote",
    "add_items",
    "authenticate",
    "comparison_item",
    "comparison_items",
    "contributor_by_name",
    "contributor_by_token",
    "create_contributor",
    "create_project",
    "end_session",
    "get_contributor",
    "get_project",
    "gold_rows",
    "hash_token",
    "list_projects",
    "next_task",
    "assign",
    "AssignedTask",
    "record_answer",
    "submission",
    "Submission",
    "StoredAnswer",
    "on_token_change",
    "progress",
    "project_by_name",
    "project_comparisons",
    "project_gold_items",
    "project_item_keys",
    "project_round_count",
    "project_rounds",
    "project_votes",
    "record_round",
    "revoke_token",
    "rotate_token",
    "session_contributor",
    "set_token_expiry",
    "start_session",
    "submit_response",
    "token_refusal",
]
