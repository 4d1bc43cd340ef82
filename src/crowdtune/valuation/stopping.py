"""Stopping rules for Monte Carlo Shapley estimators, composable with ``|`` and ``&``.

A rule looks at the :class:`Progress` of an estimate after every wave of samples and says whether
to stop. Count rules (:class:`MaxPermutations`, :class:`MaxEvaluations`) also cap how many
antithetic pairs the sampler draws, so a run stops exactly on its budget.

>>> rule = MaxEvaluations(10_000) | TimeBudget(2.0)
>>> rule
MaxEvaluations(10000) | TimeBudget(2.0)
>>> rule(Progress(pairs=10, evaluations=12_000, seconds=0.1))
True
>>> (MaxPermutations(100) | RelativeStandardError(0.01)).max_pairs(Progress(10, 0, 0.0), 12)
40
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Progress:
    """Where an estimate stands: pairs drawn, evaluations spent, seconds, current values."""

    pairs: int
    evaluations: int
    seconds: float
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stderr: np.ndarray = field(default_factory=lambda: np.zeros(0))


class StoppingRule:
    """Base class: ``rule(progress) -> bool``; ``a | b`` stops when either does, ``a & b`` both."""

    def __call__(self, progress: Progress) -> bool:
        raise NotImplementedError

    def max_pairs(self, progress: Progress, evaluations_per_pair: int) -> int | None:
        """How many more antithetic pairs this rule lets the sampler draw; ``None``: no cap."""
        return None

    def check(self, n_players: int, evaluations_per_pair: int, spent: int = 0) -> None:
        """Raise ``ValueError`` naming the minimum when the budget cannot fit one pair.

        ``spent`` is what the estimator evaluates before sampling (its exact positions).
        """

    def __or__(self, other: StoppingRule) -> StoppingRule:
        return AnyOf(self, other)

    def __and__(self, other: StoppingRule) -> StoppingRule:
        return AllOf(self, other)


@dataclass(frozen=True, repr=False)
class AnyOf(StoppingRule):
    """Stop when any of ``rules`` says so; the pair cap is the smallest of theirs."""

    first: StoppingRule
    second: StoppingRule

    def __call__(self, progress: Progress) -> bool:
        return self.first(progress) or self.second(progress)

    def max_pairs(self, progress: Progress, evaluations_per_pair: int) -> int | None:
        caps = [r.max_pairs(progress, evaluations_per_pair) for r in (self.first, self.second)]
        known = [c for c in caps if c is not None]
        return min(known) if known else None

    def check(self, n_players: int, evaluations_per_pair: int, spent: int = 0) -> None:
        self.first.check(n_players, evaluations_per_pair, spent)
        self.second.check(n_players, evaluations_per_pair, spent)

    def __repr__(self) -> str:
        return f"{self.first!r} | {self.second!r}"


@dataclass(frozen=True, repr=False)
class AllOf(StoppingRule):
    """Stop when both rules say so; the pair cap is the larger of theirs (``None`` if either has
    none)."""

    first: StoppingRule
    second: StoppingRule

    def __call__(self, progress: Progress) -> bool:
        return self.first(progress) and self.second(progress)

    def max_pairs(self, progress: Progress, evaluations_per_pair: int) -> int | None:
        caps = [r.max_pairs(progress, evaluations_per_pair) for r in (self.first, self.second)]
        return None if None in caps else max(c for c in caps if c is not None)

    def check(self, n_players: int, evaluations_per_pair: int, spent: int = 0) -> None:
        self.first.check(n_players, evaluations_per_pair, spent)
        self.second.check(n_players, evaluations_per_pair, spent)

    def __repr__(self) -> str:
        return f"({self.first!r} & {self.second!r})"


@dataclass(frozen=True)
class MaxPermutations(StoppingRule):
    """Stop after ``n`` permutations, rounded up to whole antithetic pairs (at least 2)."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(
                f"n_permutations must be at least 2 (one antithetic pair); got {self.n}"
            )

    def __call__(self, progress: Progress) -> bool:
        return 2 * progress.pairs >= self.n

    def max_pairs(self, progress: Progress, evaluations_per_pair: int) -> int | None:
        return max(0, math.ceil(self.n / 2) - progress.pairs)

    def __repr__(self) -> str:
        return f"MaxPermutations({self.n})"


@dataclass(frozen=True)
class MaxEvaluations(StoppingRule):
    """Stop before spending more than ``n`` game evaluations (exact strata included)."""

    n: int

    def __call__(self, progress: Progress) -> bool:
        return progress.evaluations >= self.n

    def max_pairs(self, progress: Progress, evaluations_per_pair: int) -> int | None:
        return max(0, (self.n - progress.evaluations) // evaluations_per_pair)

    def check(self, n_players: int, evaluations_per_pair: int, spent: int = 0) -> None:
        minimum = spent + evaluations_per_pair
        if self.n < minimum:
            how = f"2*(n+1) = {evaluations_per_pair}"
            if spent:
                how = f"{spent} for the exact positions + {how} for one antithetic pair"
            raise ValueError(
                f"max_evaluations={self.n} is too small for one antithetic pair of permutations "
                f"of {n_players} players: the minimum is {how}"
                + (f" = {minimum} evaluations" if spent else " evaluations")
            )

    def __repr__(self) -> str:
        return f"MaxEvaluations({self.n})"


@dataclass(frozen=True)
class TimeBudget(StoppingRule):
    """Stop after the first wave that ends past ``seconds`` of wall-clock time."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise ValueError(f"seconds must be non-negative; got {self.seconds}")

    def __call__(self, progress: Progress) -> bool:
        return progress.seconds >= self.seconds

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds})"


@dataclass(frozen=True)
class RelativeStandardError(StoppingRule):
    """Stop when the largest standard error is at most ``rtol`` times the largest ``|value|``.

    Scaling by the largest value rather than each player's own keeps players whose value is near
    zero from holding the estimate back forever. ``min_pairs`` pairs come first, so the standard
    errors rest on enough samples.
    """

    rtol: float
    min_pairs: int = 30

    def __post_init__(self) -> None:
        if not self.rtol > 0:
            raise ValueError(f"rtol must be positive; got {self.rtol}")

    def __call__(self, progress: Progress) -> bool:
        if progress.pairs < self.min_pairs or progress.values.size == 0:
            return False
        scale = float(np.max(np.abs(progress.values)))
        return bool(np.max(progress.stderr) <= self.rtol * scale)

    def __repr__(self) -> str:
        return f"RelativeStandardError({self.rtol})"


def budget(
    *,
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seconds: float | None = None,
    rtol: float | None = None,
) -> StoppingRule:
    """The rule that stops at the first of the given budgets; at least one is required."""
    rules: list[StoppingRule] = []
    if n_permutations is not None:
        rules.append(MaxPermutations(n_permutations))
    if max_evaluations is not None:
        rules.append(MaxEvaluations(max_evaluations))
    if seconds is not None:
        rules.append(TimeBudget(seconds))
    if rtol is not None:
        rules.append(RelativeStandardError(rtol))
    if not rules:
        raise ValueError("give a budget: n_permutations, max_evaluations, seconds or rtol")
    rule = rules[0]
    for other in rules[1:]:
        rule = rule | other
    return rule
