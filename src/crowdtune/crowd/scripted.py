"""Scripted contributors: what a crowd member of a known behaviour answers to one task.

The scripted crowd (``crowdtune crowd simulate``, the loop demo, the tests and the benchmark)
answers through the HTTP API like any person; this module holds only its decisions, as pure
functions of the task's texts, what the client knows of the truth, and a
:class:`numpy.random.Generator`, so the same seed gives the same answers.

Revision behaviours (:data:`REVISION_BEHAVIOURS`):

- ``expert`` submits the reference revision where the client knows one (CaR's expert revision),
  else a light cleanup of the answer (whitespace, a capital first letter, a final full stop): a
  cleanup carries little information, so an expert without references is worth little more than a
  lazy contributor;
- ``lazy`` returns the answer unchanged;
- ``noisy`` truncates the answer or shuffles its sentences: on topic, but damaged;
- ``adversarial`` writes text unrelated to the prompt: the answer of another item drawn from a
  pool the caller passes, else a sentence of a fixed off-topic corpus.

Vote behaviours (:data:`VOTE_BEHAVIOURS`): ``oracle`` votes the truth, ``random`` picks A or B
uniformly, ``contrarian`` votes against the truth. The truth of a pairwise item is its gold
verdict where the client knows it (the source dataset's label); :func:`proxy_truth` gives the
documented fallback, the longer answer.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> revise("expert", "Name a colour.", "red", "Red is a colour.", rng)
'Red is a colour.'
>>> revise("lazy", "Name a colour.", "red", "Red is a colour.", rng)
'red'
>>> vote("contrarian", "a", rng)
'b'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from crowdtune.validation import check_choice

__all__ = [
    "BEHAVIOURS",
    "BEHAVIOUR_QUALITY",
    "OFF_TOPIC_TEXTS",
    "REVISION_BEHAVIOURS",
    "VOTE_BEHAVIOURS",
    "Verdict",
    "behaviour_kind",
    "proxy_truth",
    "revise",
    "split_sentences",
    "vote",
]

Verdict = Literal["a", "b", "tie"]

REVISION_BEHAVIOURS: tuple[str, ...] = ("expert", "lazy", "noisy", "adversarial")
VOTE_BEHAVIOURS: tuple[str, ...] = ("oracle", "random", "contrarian")
BEHAVIOURS: tuple[str, ...] = REVISION_BEHAVIOURS + VOTE_BEHAVIOURS

#: The expected usefulness of each behaviour's feedback, relative to giving none (0): the known
#: ordering that credit schemes should recover (Spearman with the points paid), on one scale per
#: kind of task. Only the order within a kind is a claim; the numbers are ranks, not effect sizes.
#:
#: - ``expert`` (1.0): the reference revision is what the evaluation measures (held-out NLL of
#:   reference revisions), so it is the most useful;
#: - ``lazy`` (0.0): the answer unchanged adds no information to the item. On imported items (CaR's
#:   original answers rather than the model's own) training on them can still move the model
#:   toward the domain, so a lazy group's measured gain may be slightly positive, but below an
#:   expert's;
#: - ``noisy`` (-0.5): on topic but truncated or reordered, it teaches the model to stop early or
#:   lose coherence;
#: - ``adversarial`` (-1.0): text unrelated to the prompt, the most harmful;
#: - ``oracle`` (1.0) > ``random`` (0.0, no information in expectation) > ``contrarian`` (-1.0).
BEHAVIOUR_QUALITY: dict[str, float] = {
    "expert": 1.0,
    "lazy": 0.0,
    "noisy": -0.5,
    "adversarial": -1.0,
    "oracle": 1.0,
    "random": 0.0,
    "contrarian": -1.0,
}

#: What an adversary writes when the caller passes no pool of other items' answers: plain
#: sentences about nothing any instruction dataset asks.
OFF_TOPIC_TEXTS: tuple[str, ...] = (
    "The lighthouse keeper painted the railings green every spring, whatever the weather.",
    "Penguins huddle in large groups to share warmth through the long polar night.",
    "My grandmother's recipe for plum jam calls for more sugar than anyone admits.",
    "The train to the coast leaves at seven and is always late on Sundays.",
    "Basalt columns form when thick lava cools slowly and cracks into prisms.",
    "A good pair of hiking boots needs a few weeks of wear before a long trip.",
    "The orchestra tuned to the oboe's A before the conductor walked on stage.",
    "Moss grows on every side of a tree in a wet forest, not only the north.",
)

# A sentence ends at ., ! or ? followed by white space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def behaviour_kind(behaviour: str) -> Literal["revision", "vote"]:
    """Whether ``behaviour`` answers revision tasks or votes (``ValueError`` if unknown)."""
    check_choice(behaviour, BEHAVIOURS, "behaviour")
    return "revision" if behaviour in REVISION_BEHAVIOURS else "vote"


def split_sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text``, split after ``.``/``!``/``?`` and at line breaks.

    >>> split_sentences("One. Two!  Three?\\nFour")
    ['One.', 'Two!', 'Three?', 'Four']
    """
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def _cleanup(answer: str) -> str:
    """A light cleanup: collapsed spaces, a capital first letter, a final full stop."""
    text = re.sub(r"[ \t]+", " ", answer).strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?:\"')]`" else text + "."


def _damage(answer: str, rng: np.random.Generator) -> str:
    """Truncate ``answer`` or shuffle its sentences (each half the time); never return it unchanged
    when it has two words or more."""
    sentences = split_sentences(answer)
    if len(sentences) >= 2 and rng.random() < 0.5:
        order = rng.permutation(len(sentences))
        if np.all(order == np.arange(len(sentences))):
            order = np.roll(
                order, 1
            )  # a shuffle that leaves every sentence in place shuffles nothing
        return " ".join(sentences[i] for i in order)
    if len(sentences) >= 2:
        keep = int(rng.integers(1, len(sentences)))  # 1 .. n-1 sentences
        return " ".join(sentences[:keep])
    words = answer.split()
    if len(words) < 2:
        return answer
    keep = int(rng.integers(1, len(words)))  # 1 .. n-1 words
    return " ".join(words[:keep])


def _unrelated(
    prompt: str, answer: str, pool: Sequence[str] | None, rng: np.random.Generator
) -> str:
    """A text unrelated to ``prompt``: another item's answer from ``pool``, else off-topic prose."""
    candidates = [text for text in (pool or ()) if text.strip() and text not in (answer, prompt)]
    if not candidates:
        candidates = list(OFF_TOPIC_TEXTS)
    return candidates[int(rng.integers(len(candidates)))]


def revise(
    behaviour: str,
    prompt: str,
    answer: str,
    reference: str | None,
    rng: np.random.Generator,
    *,
    pool: Sequence[str] | None = None,
) -> str:
    """The revision a scripted contributor of ``behaviour`` submits for one answer.

    Parameters
    ----------
    behaviour
        One of :data:`REVISION_BEHAVIOURS`.
    prompt, answer
        The item's prompt and the answer shown.
    reference
        The reference revision where the client knows one (the API never reveals it), else None.
    rng
        The only source of randomness (``noisy`` and ``adversarial`` draw from it).
    pool
        For ``adversarial``: texts to draw an unrelated answer from (other items' answers; the
        answer and prompt themselves are skipped). Without it, :data:`OFF_TOPIC_TEXTS`.

    Returns
    -------
    str
        Never empty where ``answer`` is not.
    """
    check_choice(behaviour, REVISION_BEHAVIOURS, "revision behaviour")
    if behaviour == "expert":
        return reference if reference and reference.strip() else _cleanup(answer)
    if behaviour == "lazy":
        return answer
    if behaviour == "noisy":
        return _damage(answer, rng)
    return _unrelated(prompt, answer, pool, rng)


_OPPOSITE: dict[str, Verdict] = {"a": "b", "b": "a"}


def vote(
    behaviour: str,
    truth: Verdict | None,
    rng: np.random.Generator,
    *,
    tie_probability: float = 0.0,
) -> Verdict:
    """The vote a scripted contributor of ``behaviour`` casts on one pairwise item.

    Parameters
    ----------
    behaviour
        One of :data:`VOTE_BEHAVIOURS`.
    truth
        The item's true verdict (gold, or :func:`proxy_truth`); ``oracle`` and ``contrarian``
        need it, ``random`` ignores it.
    rng
        The only source of randomness.
    tie_probability
        How often ``random`` votes a tie (default never: gold verdicts of pairwise datasets are
        mostly decisive, so a random voter that picked a tie one time in three would look like an
        undecided annotator rather than a careless one).

    Returns
    -------
    {"a", "b", "tie"}
        ``contrarian`` on a true tie picks A or B at random (a tie has no opposite; any decisive
        vote disagrees with it).
    """
    check_choice(behaviour, VOTE_BEHAVIOURS, "vote behaviour")
    if not 0.0 <= tie_probability <= 1.0:
        raise ValueError(f"tie_probability must be in [0, 1], got {tie_probability}")
    if behaviour == "random":
        if rng.random() < tie_probability:
            return "tie"
        return "a" if rng.random() < 0.5 else "b"
    if truth is None:
        raise ValueError(f"a {behaviour} voter needs the item's truth; got None")
    check_choice(truth, ("a", "b", "tie"), "verdict")
    if behaviour == "oracle":
        return truth
    if truth == "tie":
        return "a" if rng.random() < 0.5 else "b"
    return _OPPOSITE[truth]


def proxy_truth(answer_a: str, answer_b: str) -> Verdict:
    """The verdict to use where the client knows no gold: the longer answer wins (a tie if equal).

    A proxy, and a biased one (judges and reward models favour length); it keeps ``oracle`` and
    ``contrarian`` well defined and opposite on any item, which is what the tests and the demo
    need. Pass the source dataset's gold where there is one.

    >>> proxy_truth("short", "a longer answer")
    'b'
    """
    length_a, length_b = len(answer_a.strip()), len(answer_b.strip())
    if length_a == length_b:
        return "tie"
    return "a" if length_a > length_b else "b"
