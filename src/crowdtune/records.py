"""Typed feedback records: what every stage of crowdtune passes around.

A :class:`Comparison` is one vote: a prompt (one string per user turn), two responses (one string
per assistant turn), and a verdict, A better, B better or a tie. Class order is always
``[A, B, TIE]`` (:data:`LABELS`): label 0 is A, 1 is B, 2 is a tie, in every predictor, file and
table. Records do no I/O; readers and writers live in :mod:`crowdtune.datasets`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
