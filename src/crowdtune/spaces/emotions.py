"""The emotion space: text to 28 GoEmotions scores, emotion targets, and distances to them.

:class:`EmotionClassifier` maps a text to 28 sigmoid scores (27 emotions plus neutral): MiniLM
sentence embeddings (:func:`crowdtune.spaces.text.embed_texts`) beside word 1-2-gram TF-IDF
features, one logistic regression per label, and per-label decision thresholds tuned on GoEmotions
dev to maximise each label's F1.

The published experiment scored texts with a fine-tuned RoBERTa
(``SamLowe/roberta-base-go_emotions``: micro-F1 0.585 on test at threshold 0.5); the GoEmotions
paper's fine-tuned BERT-base reports macro-F1 0.46. Linear heads on a frozen encoder are the
CPU-cheap stand-in. Measured on the full test split (5,427 texts; fitted on the 43,410 train texts,
thresholds tuned on dev; the fit takes about 50 s on 2 cores once the embeddings are cached):

- MiniLM + n-grams (the default): micro-F1 0.548, macro-F1 0.455 (at threshold 0.5: 0.499, 0.345);
- m2v + n-grams: 0.534, 0.446 (0.489, 0.330);
- MiniLM alone (``ngrams=False``): 0.464, 0.377 (0.399, 0.250).

The default misses RoBERTa's micro-F1 by 0.04 and matches BERT-base's macro-F1 within 0.01.
Fine-tuning the encoder end to end (RoBERTa-base or BERT-base, 3-4 epochs on the train split:
minutes on one GPU, many hours on 2 CPU cores) closes the gap: linear heads cannot learn features
that a frozen sentence embedding does not separate, and n-grams only know words seen in training.

The *point* of a model is the mean score vector of its generations (:func:`emotion_point`). The
*target* of an emotion, as published, is the pool sentence scoring highest on that emotion plus its
100 nearest neighbours by Euclidean distance between score vectors; its centre is their mean
score vector and its band the per-emotion 25-75 % quantiles (:func:`emotion_target`).
:func:`distance_to_target` is the Euclidean distance between a point and a target centre, the
distance the published experiment used for neighbours, averaged over the 28 target emotions when
it reports "mean distance over 28 emotions".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from crowdtune.datasets.goemotions import GOEMOTIONS_LABELS, load_goemotions
from crowdtune.datasets.home import cache_dir
from crowdtune.datasets.textfile import atomic_path
from crowdtune.spaces.text import ENCODERS, embed_texts
from crowdtune.validation import check_choice

#: Bump when the classifier's code or defaults change, so cached fits are refitted.
EMOTION_MODEL_VERSION = 2
#: Inverse L2 regularisation of the (standardised) embedding features. Chosen on GoEmotions dev
#: (thresholds tuned on one half, F1 read on the other; MiniLM, 9-13k train texts): 0.01 beat
#: 0.03, 0.1, 0.3 and 1 by 1-6 points of macro-F1.
DEFAULT_C = 0.01
#: Inverse L2 regularisation of the word n-gram TF-IDF features (3 beat 10 on dev).
DEFAULT_NGRAM_C = 3.0
#: Thresholds tried per label when tuning on dev.
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)
#: Neighbours of the top sentence in an emotion target (published: 100).
TARGET_NEIGHBOURS = 100
#: Distances :func:`distance_to_target` computes.
DISTANCE_METRICS = {
    "l2": "Euclidean distance between score vectors (published, for the neighbourhood)",
    "mean-abs": "mean over the 28 emotions of the absolute score difference",
}


def tune_thresholds(
    scores: np.ndarray, labels: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> np.ndarray:
    """Per-label thresholds on ``grid`` that maximise each label's F1 on (``scores``, ``labels``).

    A label without positives keeps 0.5 (no threshold can be judged on it); ties go to the lowest
    threshold.

    Parameters
    ----------
    scores
        ``(n, L)`` scores in [0, 1].
    labels
        ``(n, L)`` 0/1 truth.
    grid
        Candidate thresholds.

    Returns
    -------
    numpy.ndarray
        ``(L,)`` thresholds.
    """
    scores, truth = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    thresholds = np.full(scores.shape[1], 0.5)
    for label in range(scores.shape[1]):
        positives = truth[:, label]
        if not positives.any():
            continue
        predicted = scores[:, label, None] >= grid[None, :]  # (n, grid)
        true_pos = (predicted & positives[:, None]).sum(axis=0)
        f1 = 2 * true_pos / (predicted.sum(axis=0) + positives.sum())
        thresholds[label] = grid[int(np.argmax(f1))]
    return thresholds


def multilabel_f1(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Micro-F1, macro-F1 (over all labels, an absent label with no predictions scoring 0) and
    per-label F1 of 0/1 matrices."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "per_label_f1": [
            float(v) for v in f1_score(truth, predicted, average=None, zero_division=0)
        ],
    }


class EmotionClassifier(BaseEstimator):
    """Text to 28 GoEmotions scores: sentence embeddings (plus word n-grams) and one logistic
    regression per label.

    Follows scikit-learn's estimator API (``fit``, ``predict_proba``, ``predict``,
    ``get_params``), so ``sklearn.base.clone`` and model selection work on it. ``X`` is a
    sequence of texts; ``Y`` an ``(n, 28)`` 0/1 matrix.

    The embeddings are standardised. With ``ngrams`` (the default) they sit beside TF-IDF
    features of word 1-2-grams in one logistic regression per label: a frozen sentence
    embedding blurs the single words that carry many emotions ("thanks", "lol", "sorry"), and
    on GoEmotions dev the two together beat either alone (13k train texts: micro-F1 0.513 vs
    0.454 MiniLM and 0.502 n-grams). The embedding block is scaled by ``sqrt(C / ngram_C)`` so
    that one regression gives it the penalty ``C`` and the n-grams ``ngram_C``.

    Parameters
    ----------
    encoder
        Text encoder (:data:`crowdtune.spaces.text.ENCODERS`): ``minilm`` or ``m2v`` (fast).
    C
        Inverse L2 regularisation of the embedding features.
    ngrams
        Add TF-IDF features of word 1-2-grams (seen in at least 2 training texts).
    ngram_C
        Inverse L2 regularisation of the n-gram features.
    class_weight
        Passed to each logistic regression (``"balanced"`` favours recall of rare labels).
    max_iter
        L-BFGS iterations per label.
    validation_fraction
        Share of the training texts held out to tune thresholds when ``fit`` gets no dev set.
    random_state
        Seed of that hold-out split.
    progress
        Progress bar while embedding (``None``: when 500 or more texts are not cached).

    Attributes
    ----------
    scaler_
        The fitted ``StandardScaler`` of the embeddings.
    vectorizer_
        The fitted ``TfidfVectorizer`` (``None`` without ``ngrams``).
    estimator_
        The fitted ``OneVsRestClassifier`` of logistic regressions.
    thresholds_
        ``(28,)`` per-label thresholds used by :meth:`predict`.
    threshold_source_
        ``"dev"`` (tuned on the dev set given to ``fit``) or ``"holdout"``.
    n_labels_
        Number of labels.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        C: float = DEFAULT_C,
        ngrams: bool = True,
        ngram_C: float = DEFAULT_NGRAM_C,
        class_weight: str | None = None,
        max_iter: int = 2000,
        validation_fraction: float = 0.1,
        random_state: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.C = C
        self.ngrams = ngrams
        self.ngram_C = ngram_C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.progress = progress

    def embed(self, X: Sequence[str]) -> np.ndarray:
        """The encoder's embeddings of ``X`` (cached by text)."""

        return embed_texts(list(X), encoder=self.encoder, progress=self.progress)

    def _features(self, X: Sequence[str]) -> Any:
        vectors = self.scaler_.transform(self.embed(X))
        if self.vectorizer_ is None:
            return vectors
        weight = np.sqrt(self.C / self.ngram_C)
        return sparse.hstack(
            [self.vectorizer_.transform(list(X)), sparse.csr_matrix(vectors * weight)]
        ).tocsr()

    def fit(
        self,
        X: Sequence[str],
        Y: np.ndarray,
        X_dev: Sequence[str] | None = None,
        Y_dev: np.ndarray | None = None,
    ) -> EmotionClassifier:
        """Fit the heads on (``X``, ``Y``) and tune thresholds on (``X_dev``, ``Y_dev``).

        Without a dev set, ``validation_fraction`` of ``X`` is held out to tune thresholds and
        the heads are fitted on the rest.
        """

        check_choice(self.encoder, ENCODERS, "text encoder")
        texts, Y = list(X), np.asarray(Y)
        if Y.ndim != 2 or Y.shape[0] != len(texts):
            raise ValueError(f"Y must be (n_texts, n_labels) = ({len(texts)}, L), got {Y.shape}")
        if (X_dev is None) != (Y_dev is None):
            raise ValueError("pass both X_dev and Y_dev, or neither")
        if X_dev is None or Y_dev is None:
            if not 0 < self.validation_fraction < 1:
                raise ValueError("validation_fraction must be in (0, 1) when fit gets no dev set")
            order = np.random.default_rng(self.random_state).permutation(len(texts))
            n_dev = max(1, int(round(self.validation_fraction * len(texts))))
            dev_texts = [texts[i] for i in order[:n_dev]]
            Y_dev = Y[order[:n_dev]]
            texts, Y = [texts[i] for i in order[n_dev:]], Y[order[n_dev:]]
            self.threshold_source_ = "holdout"
        else:
            dev_texts, Y_dev = list(X_dev), np.asarray(Y_dev)
            if Y_dev.shape != (len(dev_texts), Y.shape[1]):
                raise ValueError(
                    f"Y_dev must be ({len(dev_texts)}, {Y.shape[1]}), got {Y_dev.shape}"
                )
            self.threshold_source_ = "dev"
        self.n_labels_ = Y.shape[1]
        # Unit-length embeddings have per-dimension spreads near 1/sqrt(dim): standardising them
        # lets L-BFGS converge in a fraction of the iterations and makes C comparable across
        # encoders.
        self.scaler_ = StandardScaler().fit(self.embed(texts))
        self.vectorizer_ = None
        if self.ngrams:
            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            self.vectorizer_.fit(texts)
            self.vectorizer_.stop_words_ = None  # the pruned n-grams: only bloat the saved model
        heads = OneVsRestClassifier(
            LogisticRegression(
                C=self.ngram_C if self.ngrams else self.C,
                class_weight=self.class_weight,
                max_iter=self.max_iter,
            )
        )
        with warnings.catch_warnings():
            # A label absent from (or present in every row of) a small training set gets a
            # constant score, which is what it should get; scikit-learn warns about it.
            warnings.filterwarnings("ignore", "Label not .* is present in all", UserWarning)
            self.estimator_ = heads.fit(self._features(texts), Y)
        self.thresholds_ = tune_thresholds(self.predict_proba(dev_texts), Y_dev)
        return self

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """``(n, 28)`` independent sigmoid scores in [0, 1] (rows need not sum to 1)."""
        texts = list(X)
        scores = np.asarray(self.estimator_.predict_proba(self._features(texts)), dtype=float)
        return scores.reshape(len(texts), self.n_labels_)

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """``(n, 28)`` 0/1 labels: each score against its label's tuned threshold."""
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int64)

    def score(self, X: Sequence[str], Y: np.ndarray) -> float:
        """Micro-F1 of :meth:`predict` against ``Y`` (higher is better, for model selection)."""
        return float(f1_score(np.asarray(Y), self.predict(X), average="micro", zero_division=0))


# ------------------------------------------------------------------------- default classifier


def _params_key(params: dict[str, Any]) -> str:
    payload = json.dumps([EMOTION_MODEL_VERSION, params], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def default_classifier_path(params: dict[str, Any] | None = None) -> Path:
    """Where the default classifier is cached: ``<cache directory>/emotions/`` (never the data
    home, which is only read). The name carries :data:`EMOTION_MODEL_VERSION` and a hash of the
    parameters, so a change refits."""
    chosen = EmotionClassifier(**(params or {})).get_params()
    chosen.pop("progress")
    name = f"emotion-classifier-v{EMOTION_MODEL_VERSION}-{_params_key(chosen)}.joblib"
    return cache_dir("emotions") / name


def fit_default(
    params: dict[str, Any] | None = None,
    progress: bool | None = None,
    cache: bool = True,
) -> EmotionClassifier:
    """Fit the classifier on GoEmotions train, thresholds tuned on dev, and cache it.

    Parameters
    ----------
    params
        :class:`EmotionClassifier` parameters (defaults otherwise).
    progress
        Progress bar while embedding.
    cache
        Write the fit to :func:`default_classifier_path` (a cache that cannot be written is
        skipped: the fit is then kept in memory only).
    """
    import joblib

    train, dev = load_goemotions("train"), load_goemotions("dev")
    classifier = EmotionClassifier(**{**(params or {}), "progress": progress})
    classifier.fit(train.texts, train.labels, dev.texts, dev.labels)
    classifier.label_names_ = train.label_names
    if cache:
        with contextlib.suppress(OSError):  # a read-only cache: keep the fit in memory only
            with atomic_path(default_classifier_path(params)) as tmp:
                joblib.dump(classifier, tmp)
    return classifier


def load_default(
    params: dict[str, Any] | None = None,
    progress: bool | None = None,
    fit_if_missing: bool = True,
) -> EmotionClassifier:
    """The cached default classifier (:func:`fit_default`), fitting it when none is cached.

    Raises
    ------
    FileNotFoundError
        Nothing is cached and ``fit_if_missing`` is false.
    """
    import joblib

    path = default_classifier_path(params)
    loaded = None
    if path.is_file():
        try:
            loaded = joblib.load(path)
        except Exception:  # noqa: BLE001 - a corrupt or stale cache is refitted, never fatal
            loaded = None
    if isinstance(loaded, EmotionClassifier):
        loaded.progress = progress
        return loaded
    if not fit_if_missing:
        raise FileNotFoundError(f"no fitted emotion classifier at {path}")
    return fit_default(params, progress=progress)


def evaluate_emotions(
    classifier: EmotionClassifier, split: str = "test", limit: int | None = None
) -> dict[str, Any]:
    """Micro/macro-F1 and per-label F1 of ``classifier`` on a GoEmotions split.

    Parameters
    ----------
    classifier
        A fitted classifier.
    split
        ``"test"``, ``"dev"`` or ``"train"``.
    limit
        Score only the first ``limit`` rows.

    Returns
    -------
    dict
        ``micro_f1``, ``macro_f1``, ``n``, ``per_label_f1`` (list in label order),
        ``label_names``, ``micro_f1_at_05`` and ``macro_f1_at_05`` (every threshold 0.5, the
        anchor's setting).
    """

    data = load_goemotions(split)
    texts, truth = data.texts, data.labels
    if limit is not None:
        texts, truth = texts[:limit], truth[:limit]
    scores = classifier.predict_proba(texts)
    result = multilabel_f1(truth, (scores >= classifier.thresholds_).astype(int))
    at_half = multilabel_f1(truth, (scores >= 0.5).astype(int))
    return {
        "micro_f1": result["micro_f1"],
        "macro_f1": result["macro_f1"],
        "n": len(texts),
        "per_label_f1": result["per_label_f1"],
        "label_names": list(data.label_names),
        "micro_f1_at_05": at_half["micro_f1"],
        "macro_f1_at_05": at_half["macro_f1"],
    }


# ------------------------------------------------------------------------ points and targets


def emotion_point(scores: np.ndarray) -> np.ndarray:
    """The point of a model: the mean ``(28,)`` score vector of its generations' ``(n, 28)``
    scores."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError(f"expected a non-empty (n, L) score matrix, got shape {scores.shape}")
    return scores.mean(axis=0)


@dataclasses.dataclass(frozen=True)
class EmotionTarget:
    """The target region of one emotion in the score space.

    Attributes
    ----------
    emotion
        The emotion's name.
    top_index
        Row of the pool sentence scoring highest on the emotion.
    indices
        Rows of the top sentence (first) and its neighbours, nearest first.
    centre
        Mean score vector of those rows.
    low, high
        Per-emotion 25 % and 75 % quantiles of those rows (the band). The mean of a skewed
        emotion can lie outside its band.
    label_names
        Names of the score columns.
    """

    emotion: str
    top_index: int
    indices: np.ndarray
    centre: np.ndarray
    low: np.ndarray
    high: np.ndarray
    label_names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "emotion": self.emotion,
            "top_index": self.top_index,
            "k": len(self.indices) - 1,
            "indices": [int(i) for i in self.indices],
            "labels": list(self.label_names),
            "centre": [float(v) for v in self.centre],
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
        }


def emotion_target(
    emotion: str | int,
    scores: np.ndarray,
    k: int = TARGET_NEIGHBOURS,
    space: np.ndarray | None = None,
    label_names: Sequence[str] = GOEMOTIONS_LABELS,
) -> EmotionTarget:
    """The published target of ``emotion``: the top-scoring pool sentence and its ``k`` nearest
    neighbours, their mean score vector (centre) and per-emotion 25-75 % band.

    Parameters
    ----------
    emotion
        Label name or column index.
    scores
        ``(n, L)`` scores of the pool sentences (the published pool: scored sentences).
    k
        Neighbours besides the top sentence (published: 100).
    space
        ``(n, d)`` vectors in which neighbours are measured (Euclidean); default ``scores``, as
        published (embeddings give neighbours of similar wording instead).
    label_names
        Names of the ``L`` columns.
    """
    scores = np.asarray(scores, dtype=float)
    names = tuple(label_names)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(f"scores must be (n, {len(names)}), got shape {scores.shape}")
    if isinstance(emotion, str):
        check_choice(emotion, names, "emotion")
        column = names.index(emotion)
    elif 0 <= int(emotion) < len(names):
        column = int(emotion)
    else:
        raise ValueError(f"emotion index {emotion} is not in [0, {len(names)})")
    if not 0 <= k < len(scores):
        raise ValueError(f"k must be in [0, {len(scores)}) for a pool of {len(scores)}, got {k}")
    vectors = scores if space is None else np.asarray(space, dtype=float)
    if len(vectors) != len(scores):
        raise ValueError(f"space has {len(vectors)} rows, scores {len(scores)}")
    top = int(np.argmax(scores[:, column]))
    distances = np.linalg.norm(vectors - vectors[top], axis=1)
    distances[top] = -1.0  # the top sentence first, even when a duplicate is as near
    indices = np.argsort(distances, kind="stable")[: k + 1]
    members = scores[indices]
    low, high = np.percentile(members, [25, 75], axis=0)
    return EmotionTarget(
        emotion=names[column],
        top_index=top,
        indices=indices,
        centre=members.mean(axis=0),
        low=low,
        high=high,
        label_names=names,
    )


def distance_to_target(points: np.ndarray, centre: np.ndarray, metric: str = "l2") -> Any:
    """Distance of each point (``(L,)`` or ``(m, L)``) to a target centre.

    ``l2`` (default) is the Euclidean distance, the measure the published experiment used in
    the score space; the published "mean distance over 28 emotions" is this distance averaged
    over the 28 targets (one per emotion). ``mean-abs`` is the mean absolute difference per
    emotion (an L1 distance divided by 28), which reads on the scale of one score.

    Returns
    -------
    float or numpy.ndarray
        A float for one point, ``(m,)`` for several.
    """
    check_choice(metric, DISTANCE_METRICS, "distance metric")
    difference = np.asarray(points, dtype=float) - np.asarray(centre, dtype=float)
    if metric == "l2":
        distance = np.linalg.norm(difference, axis=-1)
    else:
        distance = np.abs(difference).mean(axis=-1)
    return float(distance) if np.ndim(distance) == 0 else distance


def _scores_file(classifier_path: Path, split: str) -> Path:
    return classifier_path.with_name(f"{classifier_path.stem}.scores-{split}.npz")


def _stamp(path: Path) -> np.ndarray:
    """The classifier file's size and modification time: scores cached beside it are valid
    only for that very file (a refit replaces it)."""
    status = path.stat()
    return np.array([status.st_size, status.st_mtime_ns], dtype=np.int64)


def _cached_scores(classifier_path: Path, split: str, n: int) -> np.ndarray | None:
    try:
        with np.load(_scores_file(classifier_path, split)) as cached:
            scores, stamp = cached["scores"], cached["classifier"]
    except (OSError, ValueError, KeyError):
        return None
    if scores.shape != (n, len(GOEMOTIONS_LABELS)) or not np.array_equal(
        stamp, _stamp(classifier_path)
    ):
        return None
    return np.asarray(scores, dtype=float)


def pool_scores(
    classifier: EmotionClassifier | None = None,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
) -> tuple[list[str], np.ndarray]:
    """A GoEmotions split's texts and their ``(n, 28)`` scores under ``classifier``.

    With the default classifier (``classifier`` None: :func:`load_default`) the scores are
    cached beside its file (``...scores-<split>.npz``), because scoring the 43k train sentences
    takes about a minute on 2 cores; a cache made for another fit of the classifier is ignored.
    """

    data = load_goemotions(split)
    if classifier is not None:
        return data.texts, np.asarray(classifier.predict_proba(data.texts), dtype=float)
    # Only scores stamped with the very file load_default loads count (a refit replaces the file;
    # scores of the fit before are then ignored); a read-only cache means they are recomputed
    # next time.
    fitted = default_classifier_path()
    if fitted.is_file():
        scores = _cached_scores(fitted, split, len(data.texts))
        if scores is not None:
            return data.texts, scores
    if progress is not None:
        progress("loading (or fitting) the default emotion classifier")
    scores = np.asarray(load_default().predict_proba(data.texts), dtype=float)
    if fitted.is_file():
        with contextlib.suppress(OSError):
            with atomic_path(_scores_file(fitted, split)) as tmp, tmp.open("wb") as handle:
                np.savez(handle, scores=scores, classifier=_stamp(fitted))
    return data.texts, scores
