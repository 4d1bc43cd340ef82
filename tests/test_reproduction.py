"""Reproduction of the published Crowd-SFT user-grouping numbers on MovieLens.

Published settings: N = 100 users, G = 4 groups, L2 metric, zero-filled genres, delta = 0.1,
p = 2, evaluator error 0.05, 100 rounds, rank points. Targets (issue #2, from an independent
re-implementation over many runs): mean start distance 9.5 +- 0.4; mean final distance random 4.42,
interleaved 4.38, epsilon-greedy 4.23, each +- 0.3. The published tables (50 runs each) give
4.44 / 4.27 / 4.17.
"""

import pytest

from crowdtune.crowd.simulation.experiments import CrowdSpec, simulate_grouping
from crowdtune.crowd.simulation.rounds import RoundConfig

TARGETS = {"random": 4.42, "interleaved": 4.38, "epsilon-greedy": 4.23}


@pytest.mark.slow
def test_published_grouping_numbers_are_reproduced(movielens_available):
    result = simulate_grouping(
        CrowdSpec(dataset="movielens", n_users=100, missing="zero"),
        RoundConfig(
            n_groups=4, n_rounds=100, metric="l2", delta=0.1, weight_power=2.0, error_prob=0.05
        ),
        strategies=list(TARGETS),
        n_runs=1000,
        seed=2025,
    )
    summary = result.summary()
    for strategy, target in TARGETS.items():
        s = summary[strategy]
        assert s["runs"] == 1000
        assert abs(s["start_distance"]["mean"] - 9.5) <= 0.4, (strategy, s["start_distance"])
        assert abs(s["final_distance"]["mean"] - target) <= 0.3, (strategy, s["final_distance"])
    # Strategy ordering that the published work reports and our runs show with paired setups:
    # epsilon-greedy ends closest to the expert.
    finals = {k: summary[k]["final_distance"]["mean"] for k in TARGETS}
    assert finals["epsilon-greedy"] < finals["random"]
