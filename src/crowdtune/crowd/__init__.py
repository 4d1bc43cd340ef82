"""Crowd-SFT rounds: grouping strategies, point schemes, credit checks, experiments, sweeps.

Shared by every kind of round: the grouping strategies (:mod:`crowdtune.crowd.grouping`) and the
point schemes (:mod:`crowdtune.crowd.points`). The vectorised simulation, with the model as a
point in a vector space, its experiments, sweeps and credit checks live in
:mod:`crowdtune.crowd.simulation`; one round on collected feedback in
:mod:`crowdtune.crowd.feedback.round`; the experiment with real language models in
:mod:`crowdtune.crowd.point_in_space`.

>>> from crowdtune.crowd import CrowdSpec, RoundConfig, simulate_grouping
>>> result = simulate_grouping(CrowdSpec(dataset="synthetic", n_users=20), RoundConfig(n_rounds=5),
...                            n_runs=3, seed=1)
>>> sorted(result.summary()["random"])
['final_distance', 'improving_rounds', 'rounds_to_threshold', 'runs', 'start_distance']
"""

from crowdtune.crowd.grouping import STRATEGIES, get_strategy
from crowdtune.crowd.points import (
    SCHEMES,
    CentroidOutcome,
    LeaveOneOutPoints,
    MarginalPoints,
    PointScheme,
    RankPoints,
    RegressionPoints,
    RoundOutcome,
    get_scheme,
    leave_one_out_shares,
)
from crowdtune.crowd.simulation.credit import (
    adversary_bottom_rate,
    centroid_shapley,
    shapley_agreement,
)
from crowdtune.crowd.simulation.experiments import (
    ADVERSARY_KINDS,
    CrowdSpec,
    GroupingResult,
    RunSetups,
    build_setups,
    simulate_grouping,
)
from crowdtune.crowd.simulation.rounds import RoundConfig, RoundsResult, run_rounds
from crowdtune.crowd.simulation.sweep import SweepGrid, SweepResult, sweep
from crowdtune.crowd.simulation.trace import RunTrace

__all__ = [
    "ADVERSARY_KINDS",
    "SCHEMES",
    "STRATEGIES",
    "CentroidOutcome",
    "CrowdSpec",
    "GroupingResult",
    "LeaveOneOutPoints",
    "MarginalPoints",
    "PointScheme",
    "RankPoints",
    "RegressionPoints",
    "RoundConfig",
    "RoundOutcome",
    "RoundsResult",
    "RunSetups",
    "RunTrace",
    "SweepGrid",
    "SweepResult",
    "adversary_bottom_rate",
    "build_setups",
    "centroid_shapley",
    "get_scheme",
    "get_strategy",
    "leave_one_out_shares",
    "run_rounds",
    "shapley_agreement",
    "simulate_grouping",
    "sweep",
]
