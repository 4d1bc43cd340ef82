"""Quality signals of a revision or rating project, as the admin page, the project stats and
the leaderboard show them (:mod:`crowdtune.crowd.signals` computes them; this module reads the
store, applies the leak rule and supplies the quality scorer), and the annotators' reliability
on a pairwise project (:func:`pairwise_reliability`).

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
from crowdtune.preference.agreement import canonical_votes
from crowdtune.preference.reliability import dawid_skene
from crowdtune.records import ratings_frame, revisions_frame
from crowdtune.server.fit_cache import FitCache, votes_version
from crowdtune.server.scorer import FIT_SCORER_HINT, QualityScorer
from crowdtune.store import repository as repo
from crowdtune.store.models import Project
from crowdtune.tables import jsonable

#: Bootstrap resamples behind the intervals of the signals.
SIGNALS_BOOTSTRAP = 200
#: Bootstrap resamples behind the reliability intervals of a pairwise project: each refits the
#: EM, so fewer than the signals' (the stats and the admin page refit when the votes change).
RELIABILITY_BOOTSTRAP = 100
#: What the reliability fit reads of a comparisons frame (its cache key digests them).
RELIABILITY_COLUMNS = ("id", "prompt", "response_a", "response_b", "label", "annotator")


#: The columns that identify an item in each kind's frame.
ITEM_KEY = {"rating": ["prompt", "response"], "revision": ["prompt", "original"]}


def _answers(session: Session, project: Project) -> pd.DataFrame:
    """Every rating or revision of the project, as the kind's records frame."""
    if project.kind == "rating":
        return ratings_frame(repo.project_ratings(session, project.id))
    return revisions_frame(repo.project_revisions(session, project.id))


def _item_sizes(frame: pd.DataFrame, key: list[str]) -> pd.Series:
    """Per row, how many answers its item has."""
    return frame.groupby(key, sort=False)[key[0]].transform("size")


def _answer_counts(frame: pd.DataFrame, key: list[str], overlap: int) -> list[dict[str, Any]]:
    """Per named contributor, answers in all and on closed items (``overlap`` answers in),
    most answers first, then by name."""
    if frame.empty:
        return []
    closed = _item_sizes(frame, key) >= overlap
    named = frame.assign(closed=closed).dropna(subset=["contributor"])
    table = named.groupby("contributor").agg(answers=("closed", "size"), closed=("closed", "sum"))
    table = table.reset_index().sort_values(["answers", "contributor"], ascending=[False, True])
    return [
        {"contributor": str(name), "answers": int(answers), "closed": int(closed)}
        for name, answers, closed in table.itertuples(index=False)
    ]


def rating_signals(
    session: Session, project: Project, frame: pd.DataFrame, *, n_bootstrap: int
) -> dict[str, Any]:
    """Agreement (overall, per aspect) and gold accuracy of a rating project's ratings
    (``frame``: the ones to count)."""
    gold = {
        (g.prompt, g.response): (g.low, g.high)
        for g in repo.project_single_gold(session, project.id)
        if g.low is not None
    }
    keys = zip(frame["prompt"], frame["response"], strict=True)
    ranges = [gold.get(key, (math.nan, math.nan)) for key in keys]
    frame = frame.copy()  # the caller's frame keeps its columns
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


def revision_quality(frame: pd.DataFrame, scorer: QualityScorer | None) -> dict[str, Any]:
    """How much the revisions in ``frame`` changed, what they gained by the CaR quality
    scorer (when it is available) and their gold accuracy."""
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
    agreement the project stats give), with the number of skips and, per contributor, the
    answers in all and on closed items (``answers``); ``closed_only`` applies the annotators'
    leak rule to the signals (see the module docs). The answers are read once."""
    project = repo.get_project(session, project_id)
    if project.kind not in ITEM_KEY:
        return None
    key = ITEM_KEY[project.kind]
    frame = _answers(session, project)
    answers = _answer_counts(frame, key, project.overlap)
    if closed_only and not frame.empty:
        frame = frame[_item_sizes(frame, key) >= project.overlap].reset_index(drop=True)
    if project.kind == "rating":
        out = rating_signals(session, project, frame, n_bootstrap=n_bootstrap)
    else:
        out = revision_quality(frame, scorer)
    out["skipped"] = repo.progress(session, project_id).skipped
    out["closed_only"] = closed_only
    out["answers"] = answers
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


def pairwise_reliability(
    frame: pd.DataFrame,
    *,
    n_bootstrap: int = RELIABILITY_BOOTSTRAP,
    cache: FitCache | None = None,
    project_id: int = 0,
) -> tuple[dict[str, Any] | None, str | None]:
    """Each contributor's estimated reliability from a pairwise project's votes (``frame``: a
    :func:`~crowdtune.records.comparisons_frame`), and None, or None and the reason there is
    none (no votes, or no item voted on by two contributors: without a shared item the fit
    cannot tell a contributor's errors from the items' truth).

    It is :func:`~crowdtune.preference.reliability.dawid_skene`'s summary without the
    per-item posteriors: ``annotators`` (least reliable first: ``annotator``, ``n_votes``,
    ``accuracy`` with ``ci_low``/``ci_high``, the agreement with the majority of the others,
    the confusion matrix with its intervals), the class shares, and ``n_bootstrap``. It counts
    every vote, open items included: only admins see it (the stats and the admin page), so
    the annotators' leak rule does not apply.

    With a ``cache`` the answer is fitted once per state of project ``project_id``'s votes
    (:func:`~crowdtune.server.fit_cache.votes_version` of every column the fit reads) and
    reused while they stay the same.
    """
    if cache is not None:
        version = (votes_version(frame, RELIABILITY_COLUMNS), n_bootstrap)
        return cache.get(
            project_id, version, lambda: pairwise_reliability(frame, n_bootstrap=n_bootstrap)
        )
    if frame.empty:
        return None, "no votes yet"
    votes = canonical_votes(frame)
    if votes.groupby("item")["annotator"].nunique().max() < 2:
        return None, "no item has votes from two different contributors yet"
    result = dawid_skene(frame, n_bootstrap=n_bootstrap)
    out = result.to_dict()
    del out["items"]
    out["n_bootstrap"] = n_bootstrap
    return jsonable(out), None
