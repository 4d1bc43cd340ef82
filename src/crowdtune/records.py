"""Typed feedback records: what every stage of crowdtune passes around.

A :class:`Comparison` is one vote: a prompt (one string per user turn), two responses (one string
per assistant turn), and a verdict, A better, B better or a tie. Class order is always
``[A, B, TIE]`` (:data:`LABELS`): label 0 is A, 1 is B, 2 is a tie, in every predictor, file and
table. A :class:`Revision` is an answer a contributor rewrote (the data supervised fine-tuning
learns from); a :class:`Rating` is a score a contributor gave one answer on a declared scale.
Each kind has a frame function (:func:`comparisons_frame`, :func:`revisions_frame`,
:func:`ratings_frame`) giving the table the later stages read. Records do no I/O; readers and
writers live in :mod:`crowdtune.datasets`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Class order of every predictor and table: A better, B better, tie.
LABELS = ("A", "B", "TIE")

#: How turns are joined into one text for models that read a single string.
TURN_SEPARATOR = "\n\n"


class Verdict(enum.Enum):
    """Which response won. ``value`` is the class index in :data:`LABELS`."""

    A = 0
    B = 1
    TIE = 2

    @property
    def label(self) -> int:
        """Class index in ``[A, B, TIE]``."""
        return self.value

    def swapped(self) -> Verdict:
        """The verdict after exchanging the two responses (a tie stays a tie)."""
        return {Verdict.A: Verdict.B, Verdict.B: Verdict.A, Verdict.TIE: Verdict.TIE}[self]

    @classmethod
    def parse(cls, value: object) -> Verdict:
        """Read a verdict from its name (``"a"``, ``"B"``, ``"tie"``), index or itself.

        Raises
        ------
        ValueError
            For anything else, naming the accepted spellings.
        """
        if isinstance(value, Verdict):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
            return cls(value)
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return cls[value.strip().upper()]
        raise ValueError(f"verdict must be 'a', 'b' or 'tie' (or 0, 1, 2), got {value!r}")


@dataclass(frozen=True)
class Comparison:
    """One pairwise vote.

    Parameters
    ----------
    id
        Unique within its source.
    prompt
        The user turns, in order.
    response_a, response_b
        The assistant turns of each side, in order (as many as ``prompt`` for a full conversation).
    verdict
        Which side won.
    annotator
        Who voted (``None`` when the source does not say).
    model_a, model_b
        Which models wrote each side, where known.
    source
        Where the vote comes from (a dataset name, a file, a project).
    """

    id: str
    prompt: tuple[str, ...]
    response_a: tuple[str, ...]
    response_b: tuple[str, ...]
    verdict: Verdict
    annotator: str | None = None
    model_a: str | None = None
    model_b: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("prompt", "response_a", "response_b"):
            turns = getattr(self, name)
            if isinstance(turns, str):
                turns = (turns,)
            turns = tuple(turns)
            if not all(isinstance(t, str) for t in turns):
                raise TypeError(f"comparison {self.id!r}: {name} must be strings, got {turns!r}")
            object.__setattr__(self, name, turns)
        object.__setattr__(self, "verdict", Verdict.parse(self.verdict))
        object.__setattr__(self, "id", str(self.id))

    def swapped(self) -> Comparison:
        """The same vote with A and B exchanged (models too; the verdict follows)."""
        return dataclasses.replace(
            self,
            response_a=self.response_b,
            response_b=self.response_a,
            model_a=self.model_b,
            model_b=self.model_a,
            verdict=self.verdict.swapped(),
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (turn tuples become lists, the verdict its name)."""
        out = dataclasses.asdict(self)
        out.update(
            prompt=list(self.prompt),
            response_a=list(self.response_a),
            response_b=list(self.response_b),
            verdict=self.verdict.name,
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Comparison:
        """Inverse of :meth:`to_dict`; unknown keys are an error (``TypeError``)."""
        return cls(**data)  # type: ignore[arg-type]


def shuffle_sides(comparisons: Sequence[Comparison], seed: int = 0) -> list[Comparison]:
    """Swap A and B of each comparison with probability 1/2 (:meth:`Comparison.swapped`).

    Loaders of data whose A/B order carries information (one side listed first because it won)
    put the sides in this random order, so that a predictor cannot learn the position.

    Parameters
    ----------
    comparisons
        The votes, in a fixed order.
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed and order give the same result.

    Returns
    -------
    list of Comparison
        The votes in the same order, about half of them swapped.
    """
    flips = np.random.default_rng(seed).random(len(comparisons)) < 0.5
    return [c.swapped() if flip else c for c, flip in zip(comparisons, flips, strict=True)]


def unpaired_turns(prompt: Sequence[str], response: Sequence[str]) -> str | None:
    """Why one side's turns do not pair with the prompt's, or None when they do: a conversation
    has one assistant turn per user turn on each side, as the TRL export
    (:func:`crowdtune.datasets.comparisons.trl_rows`) and every trainer of conversations need.

    >>> unpaired_turns(("hi", "and then?"), ("hello", "this"))
    >>> unpaired_turns(("hi", "and then?"), ("hello",))
    'has 1 turn(s) but the prompt has 2; give one response turn per prompt turn'
    """
    if len(response) == len(prompt):
        return None
    return (
        f"has {len(response)} turn(s) but the prompt has {len(prompt)}; "
        "give one response turn per prompt turn"
    )


def join_turns(turns: Sequence[str]) -> str:
    """One text from several turns, for models that read a single string."""
    return TURN_SEPARATOR.join(turns)


#: Columns of :func:`comparisons_frame`, in order.
FRAME_COLUMNS = (
    "id",
    "prompt",
    "response_a",
    "response_b",
    "label",
    "annotator",
    "model_a",
    "model_b",
    "source",
)


def comparisons_frame(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    """The table every predictor, leaderboard and agreement function reads.

    One row per comparison; ``prompt``, ``response_a`` and ``response_b`` are the turns joined
    with :data:`TURN_SEPARATOR`; ``label`` is the class index in ``[A, B, TIE]``.
    """
    rows = [
        (
            c.id,
            join_turns(c.prompt),
            join_turns(c.response_a),
            join_turns(c.response_b),
            c.verdict.label,
            c.annotator,
            c.model_a,
            c.model_b,
            c.source,
        )
        for c in comparisons
    ]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame["label"] = frame["label"].astype("int64")
    return frame


def _prompt_turns(record: str, value: object) -> tuple[str, ...]:
    """A record's prompt as a tuple of user turns (a single string is one turn)."""
    turns = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    if not turns or not all(isinstance(t, str) for t in turns):
        raise TypeError(f"{record}: prompt must be a string or a non-empty list of strings")
    return turns


def _text(record: str, name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{record}: {name} must be a string, got {type(value).__name__}")


@dataclass(frozen=True)
class Revision:
    """One answer rewritten by a contributor: the pair supervised fine-tuning learns from.

    Parameters
    ----------
    id
        Unique within its source.
    prompt
        The user turns, in order (a single string is one turn).
    original
        The answer that was shown (the last assistant turn).
    revised
        The contributor's version of it (equal to ``original`` when they left it unchanged).
    contributor
        Who revised it (``None`` when the source does not say).
    source
        Where the revision comes from (a dataset name, a file, a project).
    reference
        A known good revision of the same answer (an expert's), where there is one.
    """

    id: str
    prompt: tuple[str, ...]
    original: str
    revised: str
    contributor: str | None = None
    source: str | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        where = f"revision {self.id!r}"
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "prompt", _prompt_turns(where, self.prompt))
        for name in ("original", "revised"):
            _text(where, name, getattr(self, name))
        for name in ("contributor", "source", "reference"):
            _text(where, name, getattr(self, name), optional=True)

    @property
    def changed(self) -> bool:
        """Whether the contributor changed the answer (surrounding whitespace aside)."""
        return self.revised.strip() != self.original.strip()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the prompt turns become a list)."""
        return {**dataclasses.asdict(self), "prompt": list(self.prompt)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Revision:
        """Inverse of :meth:`to_dict`; unknown keys are an error (``TypeError``)."""
        return cls(**data)  # type: ignore[arg-type]


#: The rating scale when none is declared: 1 to 7, as the server's rating projects default to.
DEFAULT_SCALE = (1.0, 7.0)


@dataclass(frozen=True)
class Rating:
    """One score a contributor gave one answer, on a declared scale.

    Parameters
    ----------
    id
        Unique within its source.
    prompt
        The user turns, in order (a single string is one turn).
    response
        The answer that was rated (the last assistant turn).
    score
        The score, within ``scale``.
    scale
        ``(lowest, highest)`` score of the scale (default 1 to 7).
    aspects
        Scores of named aspects (``{"helpfulness": 5, ...}``) on the same scale, where given.
    contributor
        Who rated it (``None`` when the source does not say).
    source
        Where the rating comes from (a dataset name, a file, a project).
    """

    id: str
    prompt: tuple[str, ...]
    response: str
    score: float
    scale: tuple[float, float] = DEFAULT_SCALE
    aspects: Mapping[str, float] | None = field(default=None, compare=False)
    contributor: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        where = f"rating {self.id!r}"
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "prompt", _prompt_turns(where, self.prompt))
        _text(where, "response", self.response)
        for name in ("contributor", "source"):
            _text(where, name, getattr(self, name), optional=True)
        low, high = check_scale(self.scale, where)
        object.__setattr__(self, "scale", (low, high))
        object.__setattr__(self, "score", check_score(self.score, (low, high), f"{where}: score"))
        if self.aspects is not None:
            if not isinstance(self.aspects, Mapping):
                raise TypeError(f"{where}: aspects must be a mapping of name to score")
            aspects = {
                str(name): check_score(value, (low, high), f"{where}: aspect {name!r}")
                for name, value in self.aspects.items()
            }
            object.__setattr__(self, "aspects", aspects)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the prompt turns and the scale become lists)."""
        return {
            **dataclasses.asdict(self),
            "prompt": list(self.prompt),
            "scale": list(self.scale),
            "aspects": None if self.aspects is None else dict(self.aspects),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Rating:
        """Inverse of :meth:`to_dict`; unknown keys are an error (``TypeError``)."""
        values = dict(data)
        if isinstance(values.get("scale"), list):
            values["scale"] = tuple(values["scale"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_scale(scale: object, what: str = "scale") -> tuple[float, float]:
    """``(low, high)`` of a rating scale as floats; ``ValueError`` unless two finite numbers
    with ``low < high``.

    >>> check_scale((1, 7))
    (1.0, 7.0)
    """
    pair = tuple(scale) if isinstance(scale, list | tuple) else ()
    numbers = [_number(v) for v in pair]
    if len(numbers) != 2 or None in numbers or numbers[0] >= numbers[1]:  # type: ignore[operator]
        raise ValueError(f"{what}: a scale is two finite numbers, lowest first, got {scale!r}")
    return numbers[0], numbers[1]  # type: ignore[return-value]


def check_score(score: object, scale: tuple[float, float], what: str = "score") -> float:
    """A score as a float; ``ValueError`` naming ``what`` and the scale unless it is a finite
    number within ``scale``.

    >>> check_score(5, (1.0, 7.0))
    5.0
    """
    number = _number(score)
    low, high = scale
    if number is None or not low <= number <= high:
        raise ValueError(f"{what} must be a number from {low:g} to {high:g}, got {score!r}")
    return number


#: Columns of :func:`revisions_frame`, in order.
REVISION_COLUMNS = ("id", "prompt", "original", "revised", "reference", "contributor", "source")


def revisions_frame(revisions: Iterable[Revision]) -> pd.DataFrame:
    """One row per revision; ``prompt`` is the turns joined with :data:`TURN_SEPARATOR`.

    An item is identified by its ``(prompt, original)`` text: the revisions of one answer by
    several contributors share it.
    """
    rows = [
        (r.id, join_turns(r.prompt), r.original, r.revised, r.reference, r.contributor, r.source)
        for r in revisions
    ]
    return pd.DataFrame(rows, columns=list(REVISION_COLUMNS))


#: Columns of :func:`ratings_frame`, in order (each aspect adds an ``aspect_<name>`` column).
RATING_COLUMNS = (
    "id", "prompt", "response", "score", "scale_min", "scale_max", "contributor", "source",
)  # fmt: skip


def ratings_frame(ratings: Iterable[Rating]) -> pd.DataFrame:
    """One row per rating; ``prompt`` is the turns joined with :data:`TURN_SEPARATOR`, and each
    named aspect a column ``aspect_<name>`` (NaN where a rating lacks it).

    An item is identified by its ``(prompt, response)`` text: the ratings of one answer by
    several contributors share it.
    """
    ratings = list(ratings)
    rows = [
        (r.id, join_turns(r.prompt), r.response, r.score, *r.scale, r.contributor, r.source)
        for r in ratings
    ]
    frame = pd.DataFrame(rows, columns=list(RATING_COLUMNS))
    frame["score"] = frame["score"].astype("float64")
    names = sorted({name for r in ratings for name in (r.aspects or {})})
    for name in names:
        frame[f"aspect_{name}"] = [float((r.aspects or {}).get(name, math.nan)) for r in ratings]
    return frame
