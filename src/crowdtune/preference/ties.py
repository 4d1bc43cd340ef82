"""A predictor that models ties on their own: P(tie) from how alike the answers are.

Learned A/B/tie models rarely make a tie the most likely class, yet a tie is what voters say when
the two answers look the same (near-identical text, two refusals, two one-liners, the same
shape). :class:`TieAwareModel` is a two-part model in the spirit of Davidson's (1970) extension of
Bradley-Terry, where the tie probability is largest when the two sides are alike; here the tie
parameter grows with the similarity features of
:func:`~crowdtune.preference.features.similarity_features` instead of being one constant::

    P(tie)          = sigmoid(w_tie . s + b)          s: features of the unordered pair
    P(A) = (1 - P(tie)) * sigmoid(w . d)              d: A's features minus B's
    P(B) = (1 - P(tie)) * sigmoid(-w . d)

The A/B split has no intercept and ``d`` changes sign under a swap, so the model is symmetric in A
and B by construction, not only by the base class's averaging.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from crowdtune.preference.base import PairFeatureModel
from crowdtune.preference.features import (
    EMBEDDING_SIMILARITY_FEATURES,
    RESPONSE_FEATURES,
    SIMILARITY_FEATURES,
    embedding_similarity_features,
    response_features,
    similarity_features,
)
from crowdtune.validation import check_choice

#: Label index of a tie in ``[A, B, TIE]``.
TIE = 2

#: Columns the tie part may use: absolute differences of the cheap response features, then the
#: similarity features.
TIE_COLUMNS = (*(f"abs_{name}" for name in RESPONSE_FEATURES), *SIMILARITY_FEATURES)

#: The tie feature sets of :class:`TieAwareModel`. Leave-one-dataset-out (benchmarks/RESULTS.md),
#: the lexical set alone transfers best: the shape flags and length gaps say which dataset a pair
#: comes from (PandaLM's one-liners) and carry its tie rate to data with another one.
TIE_FEATURE_SETS = {
    "lexical": ("char_ratio", "token_set_ratio", "jaccard", "near_identical"),
    "similarity": SIMILARITY_FEATURES,
    "all": TIE_COLUMNS,
}


class TieAwareModel(PairFeatureModel):
    """Logistic P(tie) on pair similarity, times a symmetric logistic A-vs-B split.

    Tie features (``tie_features``): ``"lexical"`` (default) the character, token-set and word
    similarity of the two answers and the near-identical flag; ``"similarity"`` adds both refusals,
    both very short and the same-structure flags; ``"all"`` also the absolute differences of the
    two responses' cheap features (lengths, markup, refusals). ``embedding_similarity`` adds
    the cosine similarity of the two answers' sentence embeddings and the gap between their
    cosines to the prompt (:func:`~crowdtune.preference.features.embedding_similarity_features`)
    to whichever set; it embeds every text (cached by text). Split features: the signed
    differences, scaled without centring (centring would shift zero, and with it the symmetry). If
    the training data has no ties the model predicts P(tie) = 0, as the other predictors do.

    Parameters
    ----------
    tie_features
        Which tie features, a key of :data:`TIE_FEATURE_SETS`.
    C_tie
        Inverse L2 regularisation strength of the tie-vs-not logistic regression (strong by
        default: 0.01 scored best leave-one-dataset-out).
    C_split
        Inverse L2 regularisation strength of the A-vs-B logistic regression (fitted on non-ties).
    embedding_similarity
        Add the embedding similarity features to the tie part. Off by default: leave one
        dataset out they cost 0.006-0.010 nats of tie log loss on every held-out set (the cosine's
        level differs between datasets; benchmarks/RESULTS.md, "Ties as their own signal"),
        and they embed every text (about a minute per 1,000 uncached pairs on 2 CPU cores).
    encoder
        The sentence encoder of those features (a key of
        :data:`crowdtune.spaces.text.ENCODERS`); unused without ``embedding_similarity``.
    """

    def __init__(
        self,
        *,
        tie_features: str = "lexical",
        C_tie: float = 0.01,
        C_split: float = 1.0,
        embedding_similarity: bool = False,
        encoder: str = "minilm",
    ) -> None:
        self.tie_features = tie_features
        self.C_tie = C_tie
        self.C_split = C_split
        self.embedding_similarity = embedding_similarity
        self.encoder = encoder

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        prompts = X["prompt"].astype(str).tolist()
        side_a = response_features(X["response_a"].astype(str).tolist(), prompts)
        side_b = response_features(X["response_b"].astype(str).tolist(), prompts)
        diff = side_a - side_b
        shared = np.hstack([np.abs(diff), similarity_features(X)])
        if self.embedding_similarity:
            shared = np.hstack([shared, embedding_similarity_features(X, self.encoder)])
        return np.hstack([diff, shared]), np.hstack([-diff, shared])

    def _split(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The signed differences and the chosen tie columns of pair features ``F``."""
        k = len(RESPONSE_FEATURES)
        keep = [TIE_COLUMNS.index(name) for name in TIE_FEATURE_SETS[self.tie_features]]
        if self.embedding_similarity:  # appended after TIE_COLUMNS by _pair_features
            keep += [len(TIE_COLUMNS) + j for j in range(len(EMBEDDING_SIMILARITY_FEATURES))]
        return F[:, :k], F[:, k:][:, keep]

    def _fit_features(self, F: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        check_choice(self.tie_features, TIE_FEATURE_SETS, "tie feature set")
        if self.C_tie <= 0 or self.C_split <= 0:
            raise ValueError(f"C_tie and C_split must be > 0, got {self.C_tie}, {self.C_split}")
        diff, shared = self._split(F)
        tie = y == TIE
        weights = np.ones(len(y)) if sample_weight is None else sample_weight
        self.tie_model_: Pipeline | None = None
        self.tie_share_ = float(np.average(tie, weights=weights))
        if 0 < tie.sum() < len(tie):
            self.tie_model_ = make_pipeline(
                StandardScaler(), LogisticRegression(C=self.C_tie, max_iter=1000)
            ).fit(
                shared, tie.astype(int), standardscaler__sample_weight=sample_weight,
                logisticregression__sample_weight=sample_weight,
            )  # fmt: skip
        self.split_model_: Pipeline | None = None
        # Trained on both orders, so the non-tie rows always hold both A and B wins (or none).
        if (~tie).any():
            split_weight = None if sample_weight is None else sample_weight[~tie]
            self.split_model_ = make_pipeline(
                StandardScaler(with_mean=False),
                LogisticRegression(C=self.C_split, fit_intercept=False, max_iter=1000),
            ).fit(
                diff[~tie], (y[~tie] == 0).astype(int),
                standardscaler__sample_weight=split_weight,
                logisticregression__sample_weight=split_weight,
            )  # fmt: skip

    def _proba_features(self, F: np.ndarray) -> np.ndarray:
        diff, shared = self._split(F)
        p_tie = (
            self.tie_model_.predict_proba(shared)[:, 1]
            if self.tie_model_ is not None
            else np.full(len(F), self.tie_share_)
        )
        p_a = (
            self.split_model_.predict_proba(diff)[:, 1]
            if self.split_model_ is not None
            else np.full(len(F), 0.5)
        )
        return np.column_stack([(1 - p_tie) * p_a, (1 - p_tie) * (1 - p_a), p_tie])
