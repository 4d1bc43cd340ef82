"""Points of a language-model round that need more than the round's own outcome.

``rank`` and ``marginal`` read the outcome alone
(:func:`crowdtune.crowd.feedback.credit.outcome_points`). The two per-contributor schemes:

``regression``
    :class:`crowdtune.crowd.points.RegressionPoints` replayed over the stored rounds of the same
    candidate kind and this one: every group with a candidate is a measurement of its members'
    summed contributions (its gain over the base, in the evaluation's units), contributors are
    mapped to indices of the union of all rounds' contributors, and a contributor's award is its
    new estimate minus the estimate before this round. No extra training. Only this round's
    contributors are paid (the estimates of absent ones move too, but they have no row here).
``leave-one-out``
    each member of a group with a candidate earns ``score(candidate) - score(candidate trained
    without the member's rows)``, one extra training each, counted and capped by the budget:
    the winner's group first, then by rank, members in name order. A member alone in its group
    (or whose group has nothing to train without it) earns the group's gain: without it the
    base stays. Members past the budget earn None, with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crowdtune.crowd.feedback.lm_evaluation import GoldEvaluation, ModelCandidate, RoundData
from crowdtune.crowd.points import RegressionPoints, RoundOutcome
from crowdtune.training.stages import load_trained

__all__ = ["CandidateTrainer", "leave_one_out_points", "regression_points"]


class CandidateTrainer(Protocol):
    """What the leave-one-out scheme needs of the round: train on rows, record provenance,
    count a finished unit of work."""

    def train(self, rows: list[dict[str, Any]], folder: Path, label: str) -> tuple[Path, str]: ...

    def record(
        self,
        folder: Path,
        *,
        group: int,
        members: Sequence[str],
        data_hash: str,
        evaluation: Mapping[str, Any],
        left_out: str | None = None,
    ) -> None: ...

    def finish(self, message: str) -> None: ...


def regression_points(
    names: Sequence[str],
    groups: np.ndarray,
    candidates: Sequence[ModelCandidate],
    history: Sequence[Mapping[str, Any]],
    kind: str,
    select_by: str = "gold",
) -> dict[str, float]:
    """This round's regression award per contributor (see the module docstring).

    ``history`` holds earlier rounds' ``to_dict()``; rounds of another candidate kind or
    selected by another score (``select_by``: their gains are in other units) and records
    without per-candidate gains are skipped.
    """
    rounds: list[tuple[list[tuple[str, int]], dict[int, float | None]]] = []
    for details in history:
        if details.get("candidate") != kind:
            continue
        if details.get("settings", {}).get("select_by", "gold") != select_by:
            continue
        stored = details.get("candidates", [])
        if not stored or not all("gain" in c for c in stored):
            continue
        rounds.append(
            (
                [(str(r["contributor"]), int(r["group"])) for r in details.get("contributors", [])],
                {int(c["group"]): c["gain"] for c in stored},
            )
        )
    rounds.append(
        (
            [(name, int(g) + 1) for name, g in zip(names, groups, strict=True)],
            {c.group: c.gain for c in candidates},
        )
    )
    union = sorted({name for members, _ in rounds for name, _ in members})
    position = {name: i for i, name in enumerate(union)}
    scheme = RegressionPoints()
    scheme.start(1, len(union))
    increment = np.zeros(len(union))
    for members, gains_of in rounds:
        n_groups = max(gains_of)
        gains = np.zeros((1, n_groups))
        for group, gain in gains_of.items():
            gains[0, group - 1] = 0.0 if gain is None else float(gain)
        # A group without a candidate measured nothing: its members sit out this row (-1).
        row_groups = np.full((1, len(union)), -1)
        for name, group in members:
            if gains_of.get(group) is not None:
                row_groups[0, position[name]] = group - 1
        outcome = RoundOutcome(
            groups=row_groups,
            rank_of_group=np.zeros((1, n_groups), dtype=int),  # unused by the regression
            improved=np.zeros(1, dtype=bool),
            gains=gains,
            observed_gains=gains,
        )
        increment = scheme.award(outcome)[0]
    return {name: float(increment[position[name]]) for name in names}


def leave_one_out_points(
    candidates: Sequence[ModelCandidate],
    order: Sequence[int],
    data: RoundData,
    evaluator: GoldEvaluation,
    trainer: CandidateTrainer,
    folder: Path,
    *,
    budget: int,
    names: Sequence[str],
) -> tuple[dict[str, float | None], dict[str, str], int]:
    """Leave-one-out points, the reasons of those left unpaid, and the extra trainings.

    ``order`` lists the groups with a candidate (0-based), the winner first.
    """
    paid: dict[str, float | None] = {name: 0.0 for name in names}
    reasons: dict[str, str] = {}
    fits = 0
    index = {name: i + 1 for i, name in enumerate(names)}
    for k in order:
        candidate = candidates[k]
        assert candidate.score is not None and candidate.gain is not None
        for name in candidate.members:
            others = [m for m in candidate.members if m != name]
            rows = evaluator.training_rows(
                [row for m in others for row in data.rows_by_contributor[m]]
            )
            if not rows:
                paid[name] = candidate.gain  # without it there is no candidate: the base stays
                continue
            if fits >= budget:
                paid[name] = None
                reasons[name] = (
                    f"not measured: the leave-one-out budget of {budget} extra training(s) "
                    "went to members of better-ranked groups"
                )
                continue
            label = f"group {candidate.group} without {name}"
            path, data_hash = trainer.train(
                rows, folder / f"group-{candidate.group}-without-{index[name]}", label
            )
            model, _ = load_trained(path, "causal-lm")
            evaluation = evaluator.evaluate(model)
            del model
            trainer.record(
                path,
                group=candidate.group,
                members=others,
                data_hash=data_hash,
                evaluation=evaluation,
                left_out=name,
            )
            fits += 1
            paid[name] = candidate.score - evaluator.score(evaluation)
            trainer.finish(f"{label}: trained and evaluated")
    return paid, reasons, fits
