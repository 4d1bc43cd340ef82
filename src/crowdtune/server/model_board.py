"""The model leaderboard of a pairwise project: the crowd's votes rank the models that wrote its
items' answers (``model_a`` / ``model_b``: the lineage, when ``crowdtune items generate`` made
them), by Bradley–Terry with bootstrap intervals (:mod:`crowdtune.preference.leaderboard`).

Every vote on an item with two different model names is a battle, gold items included (a gold
item's answers were written by models too); votes on items without both names are counted and
left out. Ratings are on the Chatbot Arena scale (400 points per tenfold odds, mean 1000), a tie
counts half a win, and a model's rank is 1 + the number of models whose interval lies wholly
above its own.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from crowdtune.store import repository as repo
from crowdtune.tables import json_records

__all__ = ["CONFIDENCE", "N_BOOTSTRAP", "model_leaderboard"]

#: Bootstrap replicates behind the intervals (a fit over unique pairs: milliseconds).
N_BOOTSTRAP = 1000
#: Coverage of the intervals.
CONFIDENCE = 0.95


def model_leaderboard(
    session: Session, project_id: int, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """The project's model leaderboard (:class:`~crowdtune.server.schemas.ModelLeaderboardOut`).

    Each row is a model with its rating, interval, rank and battle counts, and where the model
    is one of the project's lineage its ``round`` and whether it ``is_base``. ``note`` says why
    the list is empty (no votes on items with two models yet, or not a pairwise project) or
    warns that some models never met. Ends the read.

    Raises
    ------
    NotFoundError
        No such project.
    """
    project = repo.get_project(session, project_id)
    votes = repo.project_comparisons(session, project_id) if project.kind == "pairwise" else []
    lineage = {model.name: model for model in repo.project_models(session, project_id)}
    session.commit()
    battles = pd.DataFrame(
        [
            {"model_a": vote.model_a, "model_b": vote.model_b, "label": vote.verdict.label}
            for vote in votes
            if vote.model_a and vote.model_b and vote.model_a != vote.model_b
        ],
        columns=["model_a", "model_b", "label"],
    )
    board: dict[str, Any] = {
        "project_id": project_id,
        "method": "bradley-terry(ties=half)",
        "confidence": CONFIDENCE,
        "n_bootstrap": n_bootstrap,
        "n_votes": len(battles),
        "n_votes_without_models": len(votes) - len(battles),
        "models": [],
        "note": None,
    }
    if project.kind != "pairwise":
        board["note"] = (
            f"a {project.kind} project has no votes between models; the model leaderboard ranks "
            "the models of a pairwise project's items"
        )
        return board
    if battles.empty:
        board["note"] = (
            "no votes on items with two models yet: import items with model_a and model_b "
            "(crowdtune items generate) and collect votes"
        )
        return board
    # Deferred: the fit needs SciPy, kept off the server's start (as rounds keep scikit-learn).
    from crowdtune.preference.leaderboard import bradley_terry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = bradley_terry(battles, n_bootstrap=n_bootstrap, confidence=CONFIDENCE, seed=seed)
    rows = json_records(fitted.table)
    for row in rows:
        model = lineage.get(row["model"])
        row["round"] = None if model is None else model.round_number
        row["is_base"] = bool(model is not None and model.is_base)
    board["models"] = rows
    board["note"] = "; ".join(str(w.message) for w in caught) or None
    return board
