"""Crowd-SFT rounds: contributors in groups, a candidate per group, the best one wins, points.

- :mod:`crowdtune.crowd.grouping` and :mod:`crowdtune.crowd.points`: the grouping strategies and
  point schemes every kind of round shares;
- :mod:`crowdtune.crowd.simulation`: the vectorised simulation with the model as a point in a
  vector space, its seeded experiments, sweeps and credit checks against Shapley values;
- :mod:`crowdtune.crowd.feedback`: one round at a time on a project's collected votes;
- :mod:`crowdtune.crowd.point_in_space`: the experiment with real language models in the
  emotion space.

This package exports the simulation's public names and the shared ones:

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
