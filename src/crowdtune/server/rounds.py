"""Crowd-SFT rounds on a project's stored feedback, for the API and the admin page.

A round trains, so it runs in the worker (:mod:`crowdtune.worker.rounds`), never in a request:
:func:`crowdtune.server.services.enqueue_round` queues it as a job. Here, the read side:
:func:`round_out` shows a stored round and :func:`project_credit` sums the points of the
stored rounds for the leaderboard. The round's whole outcome lives in the ``details`` JSON of
its :class:`~crowdtune.store.models.Round` row.

The crowd and preference packages load scikit-learn and SciPy, so the app imports this module
only when a round runs or credit is shown, which keeps the server's start fast.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy.orm import Session

from crowdtune.crowd.feedback.round import accumulated_points
from crowdtune.store import repository as repo
from crowdtune.store.models import Round

#: What each point scheme pays, for the leaderboard's note.
SCHEME_NOTES = {
    "rank": "rank: G - r points to every member of the group ranked r when the model improved",
    "marginal": "marginal: every member gets the group's gold log-loss gain over the base",
    "leave-one-out": "leave-one-out: what the group's candidate loses without the member",
    "shapley": "shapley: the member's Shapley value in its group's gold log-loss gain",
    "regression": "regression: each member's share of the group gains of all rounds, "
    "estimated by ridge regression",
}


def round_out(stored: Round) -> dict[str, Any]:
    """A stored round as the API returns it (:class:`crowdtune.server.schemas.RoundOut`)."""
    created = stored.created_at
    if created.tzinfo is None:  # SQLite keeps no time zone; the store writes UTC
        created = created.replace(tzinfo=UTC)
    details = stored.details
    return {
        **details,
        "id": stored.id,
        "project_id": stored.project_id,
        "created_at": created,
        "candidate": stored.candidate,
        "job_id": stored.job_id,
        "base_changed": bool(details.get("improved")),
        "points": {row["contributor"]: row["points"] for row in details.get("contributors", [])},
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
