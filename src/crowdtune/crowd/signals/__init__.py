"""Quality signals of rating and revision campaigns, per contributor and per project.

Every function reads a frame of :mod:`crowdtune.records` and returns a small result with
``to_dict()`` (JSON-ready). Data too thin for a number gives ``None`` with a ``reason``, never an
error; a malformed frame (a missing column, a rating without contributor) is a ``ValueError``.

Ratings (:func:`crowdtune.records.ratings_frame`; an item is its ``(prompt, response)`` text)
    :func:`rating_agreement`: Krippendorff's alpha at the interval and the ordinal level over the
    raters × items matrix (:func:`krippendorff.alpha`), with percentile bootstrap intervals over
    items, and each rater against the consensus of the others.
    :func:`rating_gold_accuracy`: the share of ratings on gold items that fall in the item's
    accepted range ``[gold_low, gold_high]``.
Revisions (:func:`crowdtune.records.revisions_frame`; an item is its ``(prompt, original)``)
    :func:`revision_edits`: per revision, the word-level edit distance
    (:func:`rapidfuzz.distance.Levenshtein.distance` on whitespace tokens), its normalised form
    (distance / the longer token count), the change in length (words, revised minus original) and
    whether the answer changed (:attr:`crowdtune.records.Revision.changed`).
    :func:`revision_signals`: those summed up per project and per contributor, and the quality
    gain ``score(revision) - score(original)`` of a quality scorer (anything with
    ``score(texts) -> array`` that reads CaR's item text, :func:`crowdtune.datasets.car.item_text`).
    The CaR quality scorer is :func:`crowdtune.curation.scoring.default_scorer`, which the caller
    builds and passes: ``crowd`` and ``curation`` are layers that do not import each other.
    :func:`revision_gold_accuracy`: on items with a reference revision, the share of revisions
    that moved the answer towards the reference, and the word similarity to it.

The functions see only the frame they are given: a view that must not reveal others' responses
or gold answers (an annotator's leaderboard) passes the rows of closed items only.

>>> import pandas as pd
>>> frame = pd.DataFrame({
...     "prompt": ["p"] * 6, "response": ["a", "b", "c"] * 2,
...     "score": [1.0, 4.0, 7.0, 2.0, 4.0, 7.0], "contributor": ["ann"] * 3 + ["bob"] * 3,
... })
>>> result = rating_agreement(frame, n_bootstrap=0)
>>> round(result.interval.estimate, 3), round(result.ordinal.estimate, 3)
(0.973, 0.949)
"""

from crowdtune.crowd.signals.gold import (
    GOLD_COLUMNS,
    GoldAccuracy,
    rating_gold_accuracy,
    revision_gold_accuracy,
)
from crowdtune.crowd.signals.ratings import (
    LEVELS,
    RATER_COLUMNS,
    RatingAgreement,
    alpha_replicates,
    rating_agreement,
)
from crowdtune.crowd.signals.revisions import (
    CONTRIBUTOR_COLUMNS,
    EDIT_COLUMNS,
    GAIN_QUANTILES,
    QualityGain,
    RevisionSignals,
    TextScorer,
    quality_gains,
    revision_edits,
    revision_signals,
    word_distance,
)

__all__ = [
    "CONTRIBUTOR_COLUMNS",
    "EDIT_COLUMNS",
    "GAIN_QUANTILES",
    "GOLD_COLUMNS",
    "LEVELS",
    "RATER_COLUMNS",
    "GoldAccuracy",
    "QualityGain",
    "RatingAgreement",
    "RevisionSignals",
    "TextScorer",
    "alpha_replicates",
    "quality_gains",
    "rating_agreement",
    "rating_gold_accuracy",
    "revision_edits",
    "revision_gold_accuracy",
    "revision_signals",
    "word_distance",
]
