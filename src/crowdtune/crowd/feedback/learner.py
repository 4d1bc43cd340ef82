"""The learner of a round on collected feedback: a preference model trained on a group's votes
and scored on the gold items.

:class:`GoldLearner` follows the :class:`~crowdtune.valuation.learners.Learner` protocol, so the
round's candidates and the coalitions of the Shapley and leave-one-out point schemes
(:mod:`crowdtune.crowd.feedback.credit`) are trained and scored the same way;
:func:`join_votes` joins the votes of several contributors into one training frame;
:func:`evaluation_fingerprint` says whether two rounds were scored on the same gold items.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.preference.calibration import fit_weighted
from crowdtune.preference.metrics import row_log_loss
from crowdtune.preference.registry import make_model
from crowdtune.records import LABELS

#: The column of a vote's weight in a round's training frame (absent: every vote weighs 1).
WEIGHT_COLUMN = "weight"


class GoldLearner:
    """The :class:`~crowdtune.valuation.learners.Learner` of a round: a preference model trained
    from scratch on a coalition's votes, scored on the gold items.

    ``fit(base, frame)`` returns the fitted model, or None when the votes cannot train one (see
    :meth:`why_not`); ``score`` is minus the mean gold log loss, and a None candidate (no model:
    the current one stays) scores ``-base_log_loss``. ``base`` is unused. A frame with a
    :data:`WEIGHT_COLUMN` trains with those sample weights, and only its votes of positive
    weight count towards ``min_votes``.
    """

    def __init__(
        self,
        model: str,
        gold: pd.DataFrame,
        *,
        base_log_loss: float,
        min_votes: int,
        uniform_mix: float,
        seed: int,
    ) -> None:
        self.model = model
        self.gold = gold
        self.labels = gold["label"].to_numpy()
        self.base_log_loss = base_log_loss
        self.min_votes = min_votes
        self.uniform_mix = uniform_mix
        self.seed = seed
        self.n_fits = 0

    def why_not(self, frame: pd.DataFrame) -> str | None:
        """Why these votes cannot train a candidate, or None when they can."""
        weighted = WEIGHT_COLUMN in frame.columns
        if weighted:
            frame = frame[frame[WEIGHT_COLUMN] > 0]
        if len(frame) < self.min_votes:
            return (
                f"{len(frame)} vote(s) outside the gold items"
                f"{' with a reliability weight above 0' if weighted else ''}, fewer than "
                f"min_votes={self.min_votes}"
            )
        if (frame["label"] == LABELS.index("TIE")).all():
            return "every vote is a tie: nothing to learn about which side wins"
        return None

    def fit(self, base: Any, frame: pd.DataFrame) -> Any:
        if self.why_not(frame) is not None:
            return None
        model = make_model(self.model, seed=self.seed)
        with warnings.catch_warnings():
            # Expected for many groups; the uniform mix bounds what P(tie) = 0 costs.
            warnings.filterwarnings("ignore", message="the training comparisons have no ties")
            fit_weighted(model, frame, frame["label"].to_numpy(), frame.get(WEIGHT_COLUMN))
        self.n_fits += 1
        return model

    def proba(self, candidate: Any) -> np.ndarray:
        """The candidate's gold probabilities, mixed with ``uniform_mix`` of the uniform."""
        proba = np.asarray(candidate.predict_proba(self.gold), dtype=float)
        return (1.0 - self.uniform_mix) * proba + self.uniform_mix / len(LABELS)

    def log_loss(self, candidate: Any) -> float:
        """Mean gold log loss of the candidate (the base's for None)."""
        if candidate is None:
            return self.base_log_loss
        return float(row_log_loss(self.labels, self.proba(candidate)).mean())

    def accuracy(self, candidate: Any) -> float:
        """Share of gold items whose most probable outcome is the gold answer."""
        return float((self.proba(candidate).argmax(axis=1) == self.labels).mean())

    def score(self, candidate: Any) -> float:
        return -self.log_loss(candidate)


def evaluation_fingerprint(gold: pd.DataFrame, uniform_mix: float) -> str:
    """A short hash of the gold items (texts and answers, in any order) and the scoring."""
    rows = sorted(
        "\x1f".join(map(str, row))
        for row in gold[["prompt", "response_a", "response_b", "label"]].itertuples(index=False)
    )
    digest = hashlib.sha256("\x1e".join([f"mix={uniform_mix!r}", *rows]).encode("utf-8"))
    return digest.hexdigest()[:16]


def join_votes(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The votes of several contributors as one frame (a group's or a coalition's)."""
    return pd.concat(frames, ignore_index=True)
