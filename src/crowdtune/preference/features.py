"""Cheap text features of a comparison: lengths, markup, prompt overlap, refusals, repetition.

Every published preference signal here is confounded with length, and the shape of an answer
(lists, headers, code) predicts votes about as well as length does, so these features are the
backbone of the CPU predictors. They are computed once per text; a pair's feature vector is built
from the two sides so that swapping the responses is a column permutation (see
:func:`pair_features`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rapidfuzz import fuzz

from crowdtune.spaces.text import embed_texts

_WORD = re.compile(r"\w+", re.UNICODE)
_PATTERNS = {
    "newlines": re.compile(r"\n"),
    "headers": re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE),
    "list_items": re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE),
    "code_blocks": re.compile(r"```"),
    "bold": re.compile(r"\*\*[^*\n]+\*\*"),
    "numbers": re.compile(r"\d+(?:[.,]\d+)?"),
    "questions": re.compile(r"\?"),
    "exclamations": re.compile(r"!"),
    "urls": re.compile(r"https?://"),
}
# Refusal and hedging phrases; votes in every dataset here punish them unless both sides refuse.
_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) sorry|I apologi[sz]e|I can(?:not|'t)|I(?:'m| am) (?:not able|unable)|"
    r"as an AI|as a language model|I don't have (?:personal|access|the ability)|"
    r"I do not have (?:personal|access|the ability)|I won't|I will not)\b",
    re.IGNORECASE,
)

#: Names of the per-response features, in column order.
RESPONSE_FEATURES = (
    "log_chars",
    "log_words",
    *_PATTERNS,
    "refusal",
    "type_token_ratio",
    "repeated_trigrams",
    "prompt_coverage",
    "empty",
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeated_ngram_share(words: Sequence[str], n: int = 3) -> float:
    """Share of a text's word n-grams that occur more than once (0 = no repetition)."""
    grams = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    total = sum(grams.values())
    return 0.0 if total == 0 else sum(c for c in grams.values() if c > 1) / total


def response_features(responses: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """Features of each response (rows) given its prompt, columns :data:`RESPONSE_FEATURES`."""
    rows = np.empty((len(responses), len(RESPONSE_FEATURES)))
    for i, (text, prompt) in enumerate(zip(responses, prompts, strict=True)):
        words = _words(text)
        prompt_words = set(_words(prompt))
        counts = [len(p.findall(text)) for p in _PATTERNS.values()]
        rows[i] = (
            np.log1p(len(text)),
            np.log1p(len(words)),
            *np.log1p(counts),
            len(_REFUSAL.findall(text)) > 0,
            len(set(words)) / len(words) if words else 0.0,
            repeated_ngram_share(words),
            len(prompt_words & set(words)) / len(prompt_words) if prompt_words else 0.0,
            not text.strip(),
        )
    return rows


def _jaccard(left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    out = np.empty(len(left))
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        sa, sb = set(_words(a)), set(_words(b))
        out[i] = len(sa & sb) / len(sa | sb) if sa | sb else 1.0
    return out


#: Names of the similarity features of an unordered pair, in column order (see
#: :func:`similarity_features`).
SIMILARITY_FEATURES = (
    "char_ratio",
    "token_set_ratio",
    "jaccard",
    "near_identical",
    "both_refusal",
    "one_refusal",
    "both_short",
    "same_lists",
    "same_code",
    "same_paragraphs",
)
#: Answers with at most this many words count as very short.
SHORT_WORDS = 10
#: Character similarity (rapidfuzz ratio, 0..1) from which two answers count as near-identical.
NEAR_IDENTICAL = 0.9
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _paragraphs(text: str) -> int:
    return sum(1 for part in _PARAGRAPH_BREAK.split(text) if part.strip())


def similarity_features(X: pd.DataFrame) -> np.ndarray:
    """How alike the two answers of each pair are: one row per pair, columns
    :data:`SIMILARITY_FEATURES`.

    Voters call a tie when they cannot tell the answers apart: the same words (character and
    token-set similarity, word Jaccard), two refusals, two one-liners, the same shape (both or
    neither a list, both or neither with code, as many paragraphs). Each feature is a function of
    the unordered pair, so swapping A and B leaves the row unchanged.
    """
    rows = np.empty((len(X), len(SIMILARITY_FEATURES)))
    lists, code = _PATTERNS["list_items"], _PATTERNS["code_blocks"]
    texts = zip(X["response_a"].astype(str), X["response_b"].astype(str), strict=True)
    for i, (a, b) in enumerate(texts):
        ratio = fuzz.ratio(a, b) / 100.0
        refusals = (_REFUSAL.search(a) is not None) + (_REFUSAL.search(b) is not None)
        rows[i] = (
            ratio,
            fuzz.token_set_ratio(a, b) / 100.0,
            _jaccard([a], [b])[0],
            ratio >= NEAR_IDENTICAL,
            refusals == 2,
            refusals == 1,
            max(len(_words(a)), len(_words(b))) <= SHORT_WORDS,
            (lists.search(a) is None) == (lists.search(b) is None),
            (code.search(a) is None) == (code.search(b) is None),
            _paragraphs(a) == _paragraphs(b),
        )
    return rows


def pair_embeddings(
    X: pd.DataFrame, encoder: str = "minilm"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-length embeddings of each pair's prompt, response A and response B (three float32
    arrays of shape (n_pairs, dim)), from :func:`crowdtune.spaces.text.embed_texts` (cached by
    text in memory and on disk)."""
    columns = ("prompt", "response_a", "response_b")
    texts = [X[c].astype(str).tolist() for c in columns]
    flat = embed_texts([t for column in texts for t in column], encoder=encoder)
    n = len(X)
    return flat[:n], flat[n : 2 * n], flat[2 * n :]


def cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise dot products of unit vectors (their cosine similarity): float64 of shape (n,).

    Summed in the vectors' own precision (float32 embeddings: within ~1e-7 of the exact cosine,
    so 1 for identical texts up to that), then widened; embedding-gbdt's trees were tuned on
    exactly these values."""
    return np.einsum("ij,ij->i", left, right).astype(np.float64)


#: Names of the embedding similarity features of an unordered pair (see
#: :func:`embedding_similarity_features`).
EMBEDDING_SIMILARITY_FEATURES = ("embedding_cosine", "prompt_cosine_gap")


def embedding_similarity_features(X: pd.DataFrame, encoder: str = "minilm") -> np.ndarray:
    """How alike the two answers mean, not spell: one row per pair, columns
    :data:`EMBEDDING_SIMILARITY_FEATURES`.

    ``embedding_cosine`` is cos(a, b) of the two responses' sentence embeddings (1 for identical
    answers; paraphrases score high where the lexical ratios of :func:`similarity_features` do
    not); ``prompt_cosine_gap`` is |cos(p, a) - cos(p, b)|, how differently the two answers
    relate to the prompt. Both are functions of the unordered pair: swapping A and B leaves the
    row unchanged (bit for bit: the products are summed in the same order).
    """
    e_p, e_a, e_b = pair_embeddings(X, encoder)
    return np.column_stack([cosines(e_a, e_b), np.abs(cosines(e_p, e_a) - cosines(e_p, e_b))])


def pair_features(
    side_a: np.ndarray, side_b: np.ndarray, shared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Features of each pair in its own order and swapped.

    Columns: A's features, B's, their difference, their absolute difference (ties are likelier
    when the sides look alike), then ``shared`` features that do not depend on the order. The
    swapped matrix exchanges A and B, so a model trained on both sees a symmetric problem.
    """
    diff = side_a - side_b
    ab = np.hstack([side_a, side_b, diff, np.abs(diff), shared])
    ba = np.hstack([side_b, side_a, -diff, np.abs(diff), shared])
    return ab, ba


def text_features(X: pd.DataFrame, relative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The cheap pair features of a comparison frame, in both orders (see :func:`pair_features`).

    ``relative=True`` keeps only what compares the two sides: their differences, absolute
    differences and word overlap (Jaccard). Each side's own values and the prompt's length also
    identify which dataset a pair comes from (PandaLM's one-line answers, MT-Bench's essays), and
    models that use them fit each dataset's quirks: in leave-one-dataset-out tests the relative
    set generalises much better (see benchmarks/RESULTS.md). ``relative=False`` adds them.
    """
    prompts = X["prompt"].astype(str).tolist()
    side_a = response_features(X["response_a"].astype(str).tolist(), prompts)
    side_b = response_features(X["response_b"].astype(str).tolist(), prompts)
    overlap = _jaccard(X["response_a"].astype(str).tolist(), X["response_b"].astype(str).tolist())
    if relative:
        diff = side_a - side_b
        return (
            np.column_stack([diff, np.abs(diff), overlap]),
            np.column_stack([-diff, np.abs(diff), overlap]),
        )
    prompt_length = np.log1p(X["prompt"].astype(str).str.len().to_numpy())
    return pair_features(side_a, side_b, np.column_stack([prompt_length, overlap]))


def length_features(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Length-only pair features (log characters and log words of each side), in both orders."""

    def lengths(column: str) -> np.ndarray:
        texts = X[column].astype(str)
        return np.column_stack(
            [np.log1p(texts.str.len().to_numpy()), np.log1p(texts.str.count(r"\w+").to_numpy())]
        )

    return pair_features(lengths("response_a"), lengths("response_b"), np.empty((len(X), 0)))
