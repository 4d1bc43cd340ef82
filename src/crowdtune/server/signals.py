"""Quality signals of a revision or rating project, as the admin page, the project stats and
the leaderboard show them (:mod:`crowdtune.crowd.signals` computes them; this module reads the
store, applies the leak rule and supplies the quality scorer).

- Ratings: Krippendorff's alpha at the interval and ordinal levels with bootstrap intervals, each
  rater against the others (also per named aspect), and gold accuracy (a score within the
  item's accepted range).
- Revisions: how much was changed (word edit distance, length change, unchanged-answer rate),
  the quality gain the CaR quality scorer gives the revision over the original, and gold
  accuracy (the revision moved the answer towards the item's reference revision).

The leak rule is the leaderboard's (:mod:`crowdtune.server.scoring`): an annotator's view counts
closed items only (items with ``overlap`` answers), so a figure never reveals a gold answer or
someone else's answer to an item still open to them.

The quality scorer (:class:`~crowdtune.server.scorer.QualityScorer`) is CaR's embedding scorer
(:func:`crowdtune.curation.scoring.default_scorer` with the ``m2v`` encoder) when it has been
fitted and cached on this machine (``make demo``, ``crowdtune curate select`` or ``crowdtune
serve --sample`` fit it). The server never fits it: fitting takes minutes of CPU, which belongs
to the command line or a worker, not a request.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from crowdtune.crowd.signals import (
    rating_agreement,
    rating_gold_accuracy,
    revision_gold_accuracy,
    revision_signals,
)
from crowdtune.records import ratings_frame, revisions_frame
from crowdtune.server.scorer import FIT_SCORER_HINT, QualityScorer
from crowdtune.store import repository as repo
from crowdtune.tables import jsonable

#: Bootstrap resamples behind the intervals of the signals.
SIGNALS_BOOTSTRAP = 200


def _closed(frame: pd.DataFrame, key: list[str], overlap: int) -> pd.DataFrame:
    """The rows of items with at least ``overlap`` answers."""
    if frame.empty:
        return frame
    counts = frame.groupby(key, sort=False)[key[0]].transform("size")
    return frame[counts >= overlap].reset_index(drop=True)


def rating_signals(
    session: Session, project_id: int, *, closed_only: bool, n_bootstrap: int = SIGNALS_BOOTSTRAP
) -> dict[str, Any]:
    """Agreement (overall, per aspect) and gold accuracy of a rating project's ratings."""
    project = repo.get_project(session, project_id)
    frame = ratings_frame(repo.project_ratings(session, project_id))
    if closed_only:
        frame = _closed(frame, ["prompt", "response"], project.overlap)
    gold = {
        (g.prompt, g.response): (g.low, g.high)
        for g in repo.project_single_gold(session, project_id)
        if g.low is not None
    }
    keys = zip(frame["prompt"], frame["response"], strict=True)
    ranges = [gold.get(key, (math.nan, math.nan)) for key in keys]
    frame["gold_low"] = [low for low, _ in ranges]
    frame["gold_high"] = [high for _, high in ranges]
    aspects = sorted(c for c in frame.columns if c.startswith("aspect_"))
    return {
        "kind": "rating",
        "scale": list(project.scale or ()),
        "n_ratings": len(frame),
        "agreement": rating_agreement(frame, n_bootstrap=n_bootstrap).to_dict(),
        "aspects": {
            column.removeprefix("aspect_"): rating_agreement(
                frame.dropna(subset=[column]), column=column, n_bootstrap=n_bootstrap
            ).to_dict()
            for column in aspects
        },
        "gold": rating_gold_accuracy(frame).to_dict(),
    }


def revision_quality(
    session: Session, project_id: int, *, closed_only: bool, scorer: QualityScorer | None
) -> dict[str, Any]:
    """How much a revision project's revisions changed, what they gained by the CaR quality
    scorer (when it is available) and their gold accuracy."""
    project = repo.get_project(session, project_id)
    frame = revisions_frame(repo.project_revisions(session, project_id))
    if closed_only:
        frame = _closed(frame, ["prompt", "original"], project.overlap)
    usable = scorer if scorer is not None and scorer.available() is not None else None
    signals = revision_signals(frame, usable).to_dict()
    if usable is None and len(frame):
        signals["gain_reason"] = FIT_SCORER_HINT
    return {
        "kind": "revision",
        "revisions": signals,
        "gold": revision_gold_accuracy(frame).to_dict(),
    }


def project_signals(
    session: Session,
    project_id: int,
    *,
    closed_only: bool = False,
    scorer: QualityScorer | None = None,
    n_bootstrap: int = SIGNALS_BOOTSTRAP,
) -> dict[str, Any] | None:
    """The quality signals of a rating or revision project (None for a pairwise one, whose
    agreement the project stats give), with the number of skips; ``closed_only`` applies the
    annotators' leak rule (see the module docs)."""
    project = repo.get_project(session, project_id)
    if project.kind == "rating":
        out = rating_signals(session, project_id, closed_only=closed_only, n_bootstrap=n_bootstrap)
    elif project.kind == "revision":
        out = revision_quality(session, project_id, closed_only=closed_only, scorer=scorer)
    else:
        return None
    out["skipped"] = repo.progress(session, project_id).skipped
    out["closed_only"] = closed_only
    return jsonable(out)


def contributor_signals(signals: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per contributor, the figures of :func:`project_signals` in one row: gold accuracy, and
    alpha against the others (ratings) or edits and mean gain (revisions)."""
    rows: dict[str, dict[str, Any]] = {}

    def merge(table: list[dict[str, Any]], fields: dict[str, str]) -> None:
        for entry in table:
            row = rows.setdefault(entry["contributor"], {})
            row.update({name: entry.get(column) for name, column in fields.items()})

    merge(
        signals["gold"]["contributors"],
        {"gold_answered": "n_gold", "gold_correct": "n_correct", "gold_accuracy": "accuracy"},
    )
    if signals["kind"] == "rating":
        merge(
            signals["agreement"]["raters"],
            {"alpha_interval": "alpha_interval", "alpha_ordinal": "alpha_ordinal"},
        )
    else:
        merge(
            signals["revisions"]["contributors"],
            {
                "revisions": "n_revisions",
                "unchanged_rate": "unchanged_rate",
                "mean_edit_distance": "mean_edit_distance",
                "mean_gain": "mean_gain",
            },
        )
    return rows
