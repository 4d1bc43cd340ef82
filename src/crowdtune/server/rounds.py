"""Crowd-SFT rounds on a project's stored feedback, for the API and the admin page.

:func:`run_project_round` reads the votes, gold items and earlier rounds from the store, runs
:func:`crowdtune.crowd.feedback.round.run_feedback_round` and records the outcome;
:func:`project_credit` sums the points of the stored rounds for the leaderboard. The round's
whole outcome lives in the ``details`` JSON of its :class:`~crowdtune.store.models.Round` row
(see :meth:`~crowdtune.crowd.feedback.round.FeedbackRound.to_dict`).

The crowd and preference packages load scikit-learn and SciPy, so the app imports this module
only when a round runs or credit is shown, which keeps the server's start fast.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy.orm import Session

from crowdtune.crowd.feedback.round import (
    CurrentModel,
    RoundSettings,
    accumulated_points,
    run_feedback_round,
)
from crowdtune.store import repository as repo
from crowdtune.store.models import Round

#: What each point scheme pays, for the leaderboard's note.
SCHEME_NOTES = {
    "rank": "rank: G - r points to every member of the group ranked r when the model improved",
    "marginal": "marginal: every member gets the group's gold log-loss gain over the base",
    "leave-one-out": "leave-one-out: what the group's candidate loses without the member",
    "shapley": "shapley: the member's Shapley value in its group's gold log-loss gain",
}


def run_project_round(session: Session, project_id: int, settings: RoundSettings) -> Round:
    """Run one round on everything the project has collected and store it. Commits.

    The points of earlier rounds feed the grouping strategy, and the model the last round left
    is the base to beat (see :class:`~crowdtune.crowd.feedback.round.CurrentModel`).

    Raises
    ------
    NotFoundError
        No such project.
    ValueError
        The round cannot run (no gold items, fewer contributors than groups, no group could
        train a candidate); the message says why and what to do.
    ConflictError
        Another round of the project was stored while this one ran.
    """
    rounds = [stored.details for stored in repo.project_rounds(session, project_id)]
    votes = repo.project_comparisons(session, project_id)
    gold = repo.project_gold_items(session, project_id)
    # End the read transaction before the (CPU-bound) round: no snapshot is held meanwhile.
    session.rollback()
    result = run_feedback_round(
        votes,
        gold,
        points=accumulated_points(rounds),
        settings=settings,
        current=CurrentModel.after(rounds[-1]) if rounds else None,
        round_index=len(rounds),
    )
    return repo.record_round(
        session,
        project_id,
        strategy=settings.strategy,
        scheme=settings.scheme,
        winner=f"group {result.winner}",
        details=result.to_dict(),
        after=len(rounds),
    )


def round_out(stored: Round) -> dict[str, Any]:
    """A stored round as the API returns it (:class:`crowdtune.server.schemas.RoundOut`)."""
    created = stored.created_at
    if created.tzinfo is None:  # SQLite keeps no time zone; the store writes UTC
        created = created.replace(tzinfo=UTC)
    return {
        "id": stored.id,
        "project_id": stored.project_id,
        "created_at": created,
        **stored.details,
    }


def project_credit(session: Session, project_id: int) -> tuple[dict[str, float] | None, str]:
    """Every contributor's points summed over the project's rounds, and a note saying how they
    were earned. ``(None, note)`` before the first round.

    Raises
    ------
    NotFoundError
        No such project.
    """
    rounds = repo.project_rounds(session, project_id)
    if not rounds:
        return None, "Credit comes from Crowd-SFT rounds; none has run yet."
    schemes = list(dict.fromkeys(stored.scheme for stored in rounds))
    how = "; ".join(SCHEME_NOTES.get(scheme, scheme) for scheme in schemes)
    mixed = " (points of different schemes are added as they are)" if len(schemes) > 1 else ""
    return accumulated_points(stored.details for stored in rounds), (
        f"Credit: points summed over {len(rounds)} Crowd-SFT round(s){mixed}. {how}. "
        "Contributors who were in no round have none."
    )
