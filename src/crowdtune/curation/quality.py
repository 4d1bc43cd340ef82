"""Instruction quality scorers trained pairwise on CaR's expert revisions.

A scorer maps an instruction item (``"Instruction: ... Input: ... Response: ..."``, see
:func:`crowdtune.datasets.car.item_text`) to a number, higher = better quality. It is trained on
pairs (better item, worse item) with the Bradley–Terry loss ``-log σ(s_better - s_worse)``, so only
differences of scores matter, unlike CaR's IQS (xlm-roberta-large regressed on 0/1 labels, 84.25%
pairwise accuracy, 214/254, on the expert test pairs). Every scorer has
``fit(better_texts, worse_texts)`` and ``score(texts) -> float[n]`` (:class:`QualityScorer`):

- :class:`LengthScorer`: the length of the response, the baseline. On CaR's test pairs the longer
  answer is the better one 79.1% of the time (ties count half).
- :class:`EmbeddingScorer`: MiniLM embeddings of the item and of the response, the cosine between
  instruction and response, and cheap text features (length, structure, completeness cues,
  :func:`structure_features`), standardised; then either a linear Bradley–Terry model (logistic
  regression on feature differences without intercept, :func:`bradley_terry_logistic`) or
  LightGBM with the ``lambdarank`` objective on groups of two items, which for a group of two is
  the pairwise logistic (RankNet) loss on the two trees' scores, i.e. Bradley–Terry with a tree
  ensemble as the score function. (A GBDT fitted on feature *differences* would give a function
  of the pair, not a score of one item, and could not rank a single item of new data.)
- The LoRA cross-encoder is :class:`crowdtune.curation.cross_encoder.CrossEncoderScorer`.

:mod:`crowdtune.curation.scoring` names the scorers, saves and loads them, and evaluates them on
CaR (with the measured accuracies).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from crowdtune.datasets.car import split_item_text
from crowdtune.preference.features import RESPONSE_FEATURES, response_features
from crowdtune.spaces.text import embed_texts, shared_encoder
from crowdtune.validation import check_choice

__all__ = [
    "STRUCTURE_FEATURES",
    "EmbeddingScorer",
    "LengthScorer",
    "QualityScorer",
    "bradley_terry_logistic",
    "check_pairs",
    "structure_features",
]


class QualityScorer(Protocol):
    """What every scorer offers: pairwise training and a score per item (higher = better)."""

    def fit(self, better: Sequence[str], worse: Sequence[str]) -> Any: ...

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


def check_pairs(better: Sequence[str], worse: Sequence[str]) -> tuple[list[str], list[str]]:
    """``better`` and ``worse`` as lists of strings, checked to be pairs (same, non-zero length)."""
    better, worse = [str(t) for t in better], [str(t) for t in worse]
    if len(better) != len(worse):
        raise ValueError(
            f"better and worse must have the same length, got {len(better)} and {len(worse)}"
        )
    if not better:
        raise ValueError("cannot fit a quality scorer on zero pairs")
    return better, worse


# ------------------------------------------------------------------------------------- length


class LengthScorer(BaseEstimator):
    """Score = length of the response part of each item (the whole text if it has no
    ``Response:``); ``unit`` = ``"chars"`` or ``"words"``. ``fit`` learns nothing."""

    def __init__(self, unit: str = "chars") -> None:
        self.unit = unit

    def fit(self, better: Sequence[str], worse: Sequence[str]) -> LengthScorer:
        check_pairs(better, worse)
        check_choice(self.unit, ("chars", "words"), "length unit")
        self.fitted_ = True
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        check_choice(self.unit, ("chars", "words"), "length unit")
        responses = [split_item_text(str(t))[1] for t in texts]
        if self.unit == "words":
            return np.array([len(r.split()) for r in responses], dtype=float)
        return np.array([len(r) for r in responses], dtype=float)


# ------------------------------------------------------------------------------ text features

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_LIST_LINE = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|[a-zA-Z][.)])\s+")
_INTRO = re.compile(r"^[^\n]{0,200}:\s*(?:\n|$)")

#: Per-item features beyond :data:`~crowdtune.preference.features.RESPONSE_FEATURES`: the shape
#: an expert revision tends to add (sentences, paragraphs, an intro line, list structure, a
#: finished last sentence) and the instruction's own size (experts also rewrote instructions).
STRUCTURE_FEATURES = (
    "log_sentences",
    "log_words_per_sentence",
    "log_paragraphs",
    "list_line_share",
    "intro_line",
    "ends_with_punctuation",
    "starts_with_capital",
    "log_colons",
    "log_instruction_chars",
    "log_length_ratio",
    "has_input",
)


def structure_features(responses: Sequence[str], instructions: Sequence[str]) -> np.ndarray:
    """Columns :data:`STRUCTURE_FEATURES`, one row per (response, instruction)."""
    rows = np.empty((len(responses), len(STRUCTURE_FEATURES)))
    for i, (text, instruction) in enumerate(zip(responses, instructions, strict=True)):
        stripped = text.strip()
        words = len(stripped.split())
        sentences = max(len(_SENTENCE_END.findall(stripped)), 1 if stripped else 0)
        lines = [line for line in stripped.split("\n") if line.strip()]
        rows[i] = (
            np.log1p(sentences),
            np.log1p(words / sentences) if sentences else 0.0,
            np.log1p(len(re.findall(r"\n\s*\n", stripped))),
            sum(bool(_LIST_LINE.match(line)) for line in lines) / len(lines) if lines else 0.0,
            bool(_INTRO.match(stripped)),
            stripped[-1:] in {".", "!", "?", '"', ")", "”"} if stripped else False,
            stripped[:1].isupper(),
            np.log1p(stripped.count(":")),
            np.log1p(len(instruction)),
            np.log1p(len(stripped)) - np.log1p(len(instruction)),
            "Input:" in instruction,
        )
    return rows


# --------------------------------------------------------------------------------- embedding


def bradley_terry_logistic(differences: Any, C: float = 1.0) -> Any:
    """Linear Bradley–Terry: P(better beats worse) = σ(w · (x_better - x_worse)).

    Fitted as scikit-learn's L2 logistic regression without intercept on every difference with
    label 1 and its negation with label 0 (so the fit cannot depend on which side is listed
    first); the penalty is ``||w||² / (2 C)`` against the log loss summed over both copies.
    Returns the fitted ``LogisticRegression``; ``coef_`` holds ``w``.

    Examples
    --------
    Three wins and one loss on a single feature: the unpenalised MLE has σ(w) = 3/4, w = ln 3.

    >>> model = bradley_terry_logistic([[1.0], [1.0], [1.0], [-1.0]], C=1e6)
    >>> round(float(model.coef_[0, 0]), 4)
    1.0986
    """
    from sklearn.linear_model import LogisticRegression

    diff = np.asarray(differences, dtype=float)
    n = len(diff)
    model = LogisticRegression(C=C, fit_intercept=False, max_iter=5000, tol=1e-8)
    # Both signs: the no-intercept model is then symmetric and the labels are balanced.
    return model.fit(np.vstack([diff, -diff]), np.r_[np.ones(n), np.zeros(n)])


class EmbeddingScorer(BaseEstimator):
    """Bradley–Terry on sentence embeddings and text features (see the module docstring).

    Parameters
    ----------
    encoder : str, default="minilm"
        Passed to :func:`crowdtune.spaces.text.embed_texts`.
    model : {"linear", "gbdt"}
        ``"linear"``: logistic regression without intercept on standardised feature differences
        (each pair as better − worse with label 1 and its negation with label 0), which is the
        Bradley–Terry model with a linear score. ``"gbdt"``: a LightGBM ranker with the
        ``lambdarank`` objective on groups of two items (= pairwise logistic loss).
    views : str, default="item+response"
        Which texts are embedded, joined by ``+``: ``item`` (the whole item text), ``response``
        (the response alone, plus the cosine between instruction and response embeddings);
        ``""`` uses the text features only.
    text_features : bool, default=True
        Add :func:`~crowdtune.preference.features.response_features` and
        :func:`structure_features` of the response.
    C : float, default=0.03
        Inverse L2 strength of the linear model (chosen on CaR valid from
        :data:`crowdtune.curation.scoring.DEFAULT_GRIDS` with the default views).
    n_estimators, learning_rate, num_leaves, min_child_samples, colsample_bytree, reg_lambda
        LightGBM settings of the ``"gbdt"`` model.
    random_state : int, default=0
        Seeds LightGBM's feature subsampling.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        model: str = "linear",
        views: str = "item+response",
        text_features: bool = True,
        C: float = 0.03,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 7,
        min_child_samples: int = 20,
        colsample_bytree: float = 0.3,
        reg_lambda: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.encoder = encoder
        self.model = model
        self.views = views
        self.text_features = text_features
        self.C = C
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state

    def _views(self) -> list[str]:
        views = [v for v in self.views.split("+") if v]
        for view in views:
            check_choice(view, ("item", "response"), "embedding view")
        if not views and not self.text_features:
            raise ValueError("EmbeddingScorer needs at least one view or text_features=True")
        return views

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """The raw (unstandardised) feature matrix of ``texts``, one row per item."""

        texts = [str(t) for t in texts]
        parts = [split_item_text(t) for t in texts]
        instructions = [p[0] for p in parts]
        responses = [p[1] for p in parts]
        blocks = []
        views = self._views()
        if "item" in views:
            blocks.append(embed_texts(texts, encoder=self.encoder))
        if "response" in views:
            response_vectors = embed_texts(responses, encoder=self.encoder)
            instruction_vectors = embed_texts(instructions, encoder=self.encoder)
            blocks.append(response_vectors)
            blocks.append(np.sum(response_vectors * instruction_vectors, axis=1, keepdims=True))
        if self.text_features:
            blocks.append(response_features(responses, instructions))
            blocks.append(structure_features(responses, instructions))
        return np.hstack([np.asarray(b, dtype=np.float64) for b in blocks])

    def feature_names(self) -> list[str]:
        """Column names of :meth:`features` (embedding dimensions as ``<view>_<i>``)."""

        names: list[str] = []
        views = self._views()
        dim = shared_encoder(self.encoder).dim if views else 0
        if "item" in views:
            names += [f"item_{i}" for i in range(dim)]
        if "response" in views:
            names += [f"response_{i}" for i in range(dim)] + ["instruction_response_cosine"]
        if self.text_features:
            names += list(RESPONSE_FEATURES) + list(STRUCTURE_FEATURES)
        return names

    def fit(self, better: Sequence[str], worse: Sequence[str]) -> EmbeddingScorer:
        """Fit on pairs: ``better[i]`` is a better item than ``worse[i]``."""
        from sklearn.preprocessing import StandardScaler

        better, worse = check_pairs(better, worse)
        check_choice(self.model, ("linear", "gbdt"), "embedding scorer model")
        n = len(better)
        X = self.features(better + worse)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        if self.model == "linear":
            self.estimator_ = bradley_terry_logistic(Z[:n] - Z[n:], C=self.C)
        else:
            from lightgbm import LGBMRanker

            # Interleave better/worse so each query group is one pair (labels 1, 0).
            order = np.ravel(np.column_stack([np.arange(n), np.arange(n) + n]))
            labels = np.tile([1, 0], n)
            self.estimator_ = LGBMRanker(
                objective="lambdarank",
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                colsample_bytree=self.colsample_bytree,
                reg_lambda=self.reg_lambda,
                random_state=self.random_state,
                n_jobs=1,
                verbose=-1,
            )
            self.estimator_.fit(Z[order], labels, group=np.full(n, 2))
        self.n_features_in_ = X.shape[1]
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Quality score per item (higher = better); only differences are meaningful."""
        check_is_fitted(self, "estimator_")
        if len(texts) == 0:
            return np.empty(0)
        Z = self.scaler_.transform(self.features(texts))
        if self.model == "linear":
            return np.asarray(Z @ self.estimator_.coef_.ravel(), dtype=float)
        return np.asarray(self.estimator_.predict(Z), dtype=float)
