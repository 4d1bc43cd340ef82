"""CPU preference predictors: length baseline, difference buckets, and gradient-boosted trees.

All are :class:`~crowdtune.preference.base.PairFeatureModel` subclasses: features of each pair in
both orders, trained on both, predictions averaged over both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crowdtune.preference.base import PairFeatureModel, expand_proba
from crowdtune.preference.features import (
    cosines,
    length_features,
    pair_embeddings,
    pair_features,
    text_features,
)


class LengthModel(PairFeatureModel):
    """Multinomial logistic regression on the lengths of the two responses.

    Parameters
    ----------
    C
        Inverse L2 regularisation strength (scikit-learn's ``C``).
    """

    def __init__(self, *, C: float = 1.0) -> None:
        self.C = C

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return length_features(X)

    def _fit_features(self, F: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        # The scaler is weighted too, so a weight fits exactly like that many repeated rows.
        self.model_.fit(
            F, y, standardscaler__sample_weight=sample_weight,
            logisticregression__sample_weight=sample_weight,
        )  # fmt: skip

    def _proba_features(self, F: np.ndarray) -> np.ndarray:
        return expand_proba(self.model_.predict_proba(F), self.model_.classes_)


class DifferenceBucketModel(PairFeatureModel):
    """The competition's reference solution: outcome rates per bucket of length difference.

    The character-length difference ``len(a) - len(b)`` is cut at the quantiles of the training
    differences into ``n_buckets`` buckets; each bucket predicts the class frequencies of its
    training rows. ``smoothing`` pseudo-counts of the overall class frequencies keep a bucket
    without ties from predicting P(tie) = 0 (an infinite log loss on the first tie it meets).

    Parameters
    ----------
    n_buckets
        Quantile buckets (250 in the published solution; fewer when differences repeat).
    smoothing
        Pseudo-rows of the overall class frequencies added to every bucket.
    """

    def __init__(self, *, n_buckets: int = 250, smoothing: float = 1.0) -> None:
        self.n_buckets = n_buckets
        self.smoothing = smoothing

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        diff = X["response_a"].astype(str).str.len() - X["response_b"].astype(str).str.len()
        d = diff.to_numpy(dtype=float)[:, None]
        return d, -d

    def _bucket(self, F: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges_, F[:, 0], side="right")

    def _fit_features(self, F: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        if self.n_buckets < 1 or self.smoothing < 0:
            raise ValueError("n_buckets must be >= 1 and smoothing >= 0")
        inner = np.linspace(0, 1, self.n_buckets + 1)[1:-1]
        weights = np.ones(len(y)) if sample_weight is None else sample_weight
        # Weighted quantiles need the inverted-CDF definition (numpy's only weighted one);
        # equal weights (any scale) are no weights to a quantile.
        quantiles = (
            np.quantile(F[:, 0], inner)
            if sample_weight is None or np.ptp(sample_weight) == 0
            else np.quantile(F[:, 0], inner, weights=weights, method="inverted_cdf")
        )
        self.edges_ = np.unique(quantiles)
        buckets = self._bucket(F)
        counts = np.zeros((len(self.edges_) + 1, 3))
        np.add.at(counts, (buckets, y), weights)
        prior = np.bincount(y, weights, minlength=3) / weights.sum()
        counts += self.smoothing * prior
        self.table_ = counts / counts.sum(axis=1, keepdims=True)

    def _proba_features(self, F: np.ndarray) -> np.ndarray:
        return self.table_[self._bucket(F)]


#: LightGBM settings for a few thousand pairs: few shallow trees with large leaves and row/column
#: subsampling. Deeper settings (300 trees of 15 leaves) score ~0.03 nats better in grouped CV
#: but ~0.15 worse on a dataset left out; generalisation is what users need.
GBDT_DEFAULTS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.6,
    "reg_lambda": 5.0,
}


class _GBDTModel(PairFeatureModel):
    """LightGBM multiclass on pair features; subclasses say which features.

    The LightGBM parameters of both subclasses (defaults in :data:`GBDT_DEFAULTS`) are those of
    ``lightgbm.LGBMClassifier`` under the same names; ``random_state`` seeds the row and column
    subsampling.
    """

    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    subsample: float
    subsample_freq: int
    colsample_bytree: float
    reg_lambda: float
    random_state: int
    n_jobs: int

    def _fit_features(self, F: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        from lightgbm import LGBMClassifier

        # Training data without ties (HH-RLHF, a contributor who never votes tie) has two
        # classes, which LightGBM's multiclass objective refuses.
        self.model_ = LGBMClassifier(
            objective="multiclass" if len(np.unique(y)) > 2 else "binary",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=self.subsample_freq,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            verbose=-1,
        )
        self.model_.fit(F, y, sample_weight=sample_weight)

    def _proba_features(self, F: np.ndarray) -> np.ndarray:
        return expand_proba(np.asarray(self.model_.predict_proba(F)), self.model_.classes_)


class FeaturesGBDT(_GBDTModel):
    """LightGBM on the cheap text features of :mod:`crowdtune.preference.features`.

    Parameters
    ----------
    relative
        Use only the features that compare the two sides (default); see
        :func:`~crowdtune.preference.features.text_features`.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, subsample_freq, \
colsample_bytree, reg_lambda, random_state, n_jobs
        LightGBM's, defaults in :data:`GBDT_DEFAULTS`.
    """

    def __init__(
        self,
        *,
        relative: bool = True,
        n_estimators: int = GBDT_DEFAULTS["n_estimators"],
        learning_rate: float = GBDT_DEFAULTS["learning_rate"],
        num_leaves: int = GBDT_DEFAULTS["num_leaves"],
        min_child_samples: int = GBDT_DEFAULTS["min_child_samples"],
        subsample: float = GBDT_DEFAULTS["subsample"],
        subsample_freq: int = GBDT_DEFAULTS["subsample_freq"],
        colsample_bytree: float = GBDT_DEFAULTS["colsample_bytree"],
        reg_lambda: float = GBDT_DEFAULTS["reg_lambda"],
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.relative = relative
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return text_features(X, relative=self.relative)


class EmbeddingGBDT(_GBDTModel):
    """LightGBM on MiniLM embeddings of prompt and responses plus the cheap text features.

    Embedding features: the difference and absolute difference of the two responses' embeddings,
    reduced by a PCA fitted on the training differences to ``n_components`` dimensions (a few
    thousand pairs cannot support 768 raw dimensions), each response's cosine similarity to the
    prompt, and the cosine similarity between the responses.

    Parameters
    ----------
    n_components
        Dimensions the PCA keeps (at most one less than the training pairs).
    encoder
        The sentence encoder of :func:`crowdtune.spaces.text.embed_texts`.
    relative, n_estimators, learning_rate, num_leaves, min_child_samples, subsample, \
subsample_freq, colsample_bytree, reg_lambda, random_state, n_jobs
        As in :class:`FeaturesGBDT`; ``random_state`` also seeds the PCA.
    """

    def __init__(
        self,
        *,
        n_components: int = 16,
        encoder: str = "minilm",
        relative: bool = True,
        n_estimators: int = GBDT_DEFAULTS["n_estimators"],
        learning_rate: float = GBDT_DEFAULTS["learning_rate"],
        num_leaves: int = GBDT_DEFAULTS["num_leaves"],
        min_child_samples: int = GBDT_DEFAULTS["min_child_samples"],
        subsample: float = GBDT_DEFAULTS["subsample"],
        subsample_freq: int = GBDT_DEFAULTS["subsample_freq"],
        colsample_bytree: float = GBDT_DEFAULTS["colsample_bytree"],
        reg_lambda: float = GBDT_DEFAULTS["reg_lambda"],
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_components = n_components
        self.encoder = encoder
        self.relative = relative
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_state(self, X: pd.DataFrame) -> None:
        """The PCA of the training pairs' embedding differences (unweighted: scikit-learn's PCA
        takes no sample weights; pairs of weight 0 are not among the rows)."""
        _, e_a, e_b = pair_embeddings(X, self.encoder)
        diff = e_a - e_b
        k = max(1, min(self.n_components, len(X) - 1, diff.shape[1]))
        # Fitted on both orders, so the projection of -d is minus the projection of d.
        self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(
            np.vstack([diff, -diff])
        )

    def _pair_features(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cheap_ab, cheap_ba = text_features(X, relative=self.relative)
        e_p, e_a, e_b = pair_embeddings(X, self.encoder)
        # The PCA is centred on the mean of (d, -d), which is zero: projecting is a matrix product,
        # and the swapped pair's projection is exactly minus this one.
        proj = (e_a - e_b) @ self.pca_.components_.T
        abs_proj = np.abs(e_a - e_b) @ self.pca_.components_.T
        sim_a, sim_b = cosines(e_p, e_a)[:, None], cosines(e_p, e_b)[:, None]
        sim_ab = cosines(e_a, e_b)[:, None]
        emb_ab, emb_ba = pair_features(sim_a, sim_b, np.hstack([abs_proj, sim_ab]))
        return np.hstack([cheap_ab, emb_ab, proj]), np.hstack([cheap_ba, emb_ba, -proj])


#: The CPU predictors of this module by their ``--model`` names (see
#: :data:`crowdtune.preference.registry.MODELS`), cheapest first (compared by ``crowdtune demo``).
CPU_PREDICTORS: dict[str, type[PairFeatureModel]] = {
    "length": LengthModel,
    "difference-bucket": DifferenceBucketModel,
    "features-gbdt": FeaturesGBDT,
    "embedding-gbdt": EmbeddingGBDT,
}
