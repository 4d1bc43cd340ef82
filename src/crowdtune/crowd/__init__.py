"""Crowd-SFT rounds: grouping strategies, point schemes, credit checks, experiments, sweeps.

>>> from crowdtune.crowd import CrowdSpec, RoundConfig, simulate_grouping
>>> result = simulate_grouping(CrowdSpec(dataset="synthetic", n_users=20), RoundConfig(n_rounds=5),
...                            n_runs=3, seed=1)
>>> sorted(result.summary()["random"])
['final_distance', 'improving_rounds', 'rounds_to_threshold', 'runs', 'start_distance']
"""

from crowdtune.crowd.credit import adversary_bottom_rate, centroid_shapley, shapley_agreement
from crowdtune.crowd.experiments import (
    ADVERSARY_KINDS,
    CrowdSpec,
    GroupingResult,
    RunSetups,
    build_setups,
    simulate_grouping,
)
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
from crowdtune.crowd.rounds import RoundConfig, RoundsResult, run_rounds
from crowdtune.crowd.sweep import SweepGrid, SweepResult, sweep
from crowdtune.crowd.trace import RunTrace

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
