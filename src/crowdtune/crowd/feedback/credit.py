"""Points of a round on collected feedback, by scheme (see :mod:`crowdtune.crowd.feedback.round`).

``rank`` and ``marginal`` are the point schemes of :mod:`crowdtune.crowd.points`, fed the round's
:class:`~crowdtune.crowd.points.RoundOutcome`; ``leave-one-out`` and ``shapley`` value each group
as a :class:`~crowdtune.valuation.games.LearnerGame` of its members, whose coalitions train
preference models with the round's :class:`~crowdtune.crowd.feedback.learner.GoldLearner`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from crowdtune.crowd.feedback.learner import GoldLearner, join_votes
from crowdtune.crowd.points import RoundOutcome, get_scheme
from crowdtune.valuation.estimators import exact_shapley, permutation_shapley
from crowdtune.valuation.games import LearnerGame

#: Largest group whose Shapley values are computed exactly (``2^n`` fits).
EXACT_SHAPLEY_PLAYERS = 8


def outcome_points(
    scheme: str,
    groups: np.ndarray,
    rank_of_group: np.ndarray,
    improved: bool,
    gains: np.ndarray,
) -> np.ndarray:
    """``rank`` or ``marginal`` points of one round per contributor: the simulation's schemes
    on a batch of one run, whose gains were measured on the gold items.

    ``groups`` is every contributor's group (0-based), ``rank_of_group`` every group's rank
    (``n_groups`` for a group without a candidate), ``gains`` every group's gain over the base
    (0 without a candidate).
    """
    outcome = RoundOutcome(
        groups=groups[None, :],
        rank_of_group=rank_of_group[None, :],
        improved=np.array([improved]),
        gains=gains[None, :],
        observed_gains=gains[None, :],
    )
    points = get_scheme(scheme)
    points.start(1, len(groups))
    return np.asarray(points.award(outcome)[0], dtype=float)


def award_points(
    scheme: str,
    learner: GoldLearner,
    *,
    names: list[str],
    members: list[list[str]],
    by_name: Mapping[str, pd.DataFrame],
    groups: np.ndarray,
    rank_of_group: np.ndarray,
    improved: bool,
    gains: np.ndarray,
    stream: np.random.SeedSequence,
    shapley_evaluations: int,
) -> tuple[np.ndarray, dict[int, str]]:
    """Points per contributor (in ``names`` order) and, for Shapley, the method per group.

    Members of a group without a candidate get nothing: every coalition of them is worth the
    base (it has fewer votes, or only ties, too), so each of their shares would be 0 anyway.
    """
    if scheme in ("rank", "marginal"):
        return outcome_points(scheme, groups, rank_of_group, improved, gains), {}

    position = {name: i for i, name in enumerate(names)}
    increments = np.zeros(len(names))
    methods: dict[int, str] = {}
    seeds = stream.spawn(len(members))
    for k, group in enumerate(members):
        if rank_of_group[k] >= len(members):  # no candidate
            continue
        game = LearnerGame(
            learner,
            [by_name[n] for n in group],
            collate=join_votes,
            empty_value=-learner.base_log_loss,
        )
        if scheme == "leave-one-out":
            full = -learner.base_log_loss + gains[k]
            without = game.value(~np.eye(len(group), dtype=bool))
            values = full - without
        elif len(group) <= EXACT_SHAPLEY_PLAYERS:
            result = exact_shapley(game)
            values, methods[k + 1] = result.values, result.method
        else:
            result = permutation_shapley(
                game,
                max_evaluations=shapley_evaluations,
                rng=int(seeds[k].generate_state(1)[0]),
            )
            values, methods[k + 1] = (
                result.values,
                f"{result.method}({result.n_evaluations} coalitions)",
            )
        for name, value in zip(group, values, strict=True):
            increments[position[name]] = float(value)
    return increments, methods
