"""Crowd-SFT rounds: grouping strategies, metrics, learners, point schemes, experiments, sweeps.

>>> from crowdtune.crowd import CrowdSpec, RoundConfig, simulate_grouping
>>> result = simulate_grouping(CrowdSpec(dataset="synthetic", n_users=20), RoundConfig(n_rounds=5),
...                            n_runs=3, seed=1)
>>> sorted(result.summary()["random"])
['final_distance', 'improving_rounds', 'rounds_to_threshold', 'runs', 'start_distance']
"""

from crowdtune.crowd.experiments import CrowdSpec, GroupingResult, simulate_grouping
from crowdtune.crowd.grouping import STRATEGIES, get_strategy
from crowdtune.crowd.learners import Learner, PointLearner
from crowdtune.crowd.metrics import METRICS, get_metric
from crowdtune.crowd.points import SCHEMES, PointScheme, RoundOutcome, get_scheme
from crowdtune.crowd.rounds import RoundConfig, RoundsResult, run_rounds
from crowdtune.crowd.sweep import SweepGrid, SweepResult, sweep
from crowdtune.crowd.trace import RunTrace

__all__ = [
    "METRICS",
    "SCHEMES",
    "STRATEGIES",
    "CrowdSpec",
    "GroupingResult",
    "Learner",
    "PointLearner",
    "PointScheme",
    "RoundConfig",
    "RoundOutcome",
    "RoundsResult",
    "RunTrace",
    "SweepGrid",
    "SweepResult",
    "get_metric",
    "get_scheme",
    "get_strategy",
    "run_rounds",
    "simulate_grouping",
    "sweep",
]
