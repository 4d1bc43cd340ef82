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
