"""Repository functions: everything the server reads from and writes to the store.

Plain functions taking a SQLAlchemy :class:`~sqlalchemy.orm.Session` (from
:func:`crowdtune.store.session_factory`), called through this one facade
(``from crowdtune.store import repository as repo``; ``repo.next_task(...)``). They live in
four modules:

- :mod:`~crowdtune.store.repository.writes`: contributors, projects, items, votes, rounds.
  Functions that write commit any transaction already open on the session, run their own, and
  **commit** it before they return, so a caller never acknowledges what is not stored; on an
  error they roll back and raise one of :mod:`crowdtune.store.errors` (or ``ValueError`` for
  malformed input), leaving nothing half written.
- :mod:`~crowdtune.store.repository.assignment`: :func:`next_task`, safe under concurrency on
  both backends: each item goes to at most ``overlap`` distinct contributors and never twice to
  the same one, however many annotators ask at once (PostgreSQL: row locks on the chosen item;
  SQLite: one writer at a time).
- :mod:`~crowdtune.store.repository.reads`: lookups and a project's votes, progress, gold
  items and rounds. Readers leave the session's transaction open.
- :mod:`~crowdtune.store.repository.sessions`: sign-in sessions (a random id stored hashed,
  with an absolute expiry and an idle timeout) and the token lifecycle (authenticate, revoke,
  rotate, expire); revoking or rotating a token ends its sessions.

A function with more than three parameters takes the rest by keyword.
"""

from crowdtune.store.repository.assignment import ASSIGN_ATTEMPTS, next_task
from crowdtune.store.repository.reads import (
    Progress,
    Vote,
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
    project_rounds,
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
    ITEM_FIELDS,
    MAX_LABEL,
    MAX_NAME,
    add_items,
    comparison_item,
    comparison_items,
    create_contributor,
    create_project,
    record_round,
    submit_response,
)

__all__ = [
    "ASSIGN_ATTEMPTS",
    "ITEM_FIELDS",
    "MAX_LABEL",
    "MAX_NAME",
    "SESSION_IDLE_TIMEOUT",
    "SESSION_MAX_AGE",
    "Progress",
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
    "hash_token",
    "list_projects",
    "next_task",
    "on_token_change",
    "progress",
    "project_by_name",
    "project_comparisons",
    "project_gold_items",
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
