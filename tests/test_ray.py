"""The Ray backend gives the same numbers as the local one (starts a local Ray with 2 CPUs)."""

from __future__ import annotations

import numpy as np
import pytest

from crowdtune.crowd.simulation.experiments import CrowdSpec
from crowdtune.crowd.simulation.rounds import RoundConfig
from crowdtune.crowd.simulation.sweep import SweepGrid, sweep
from crowdtune.parallel import RayBackend
from crowdtune.valuation import CentroidGame, permutation_shapley

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def ray_backend():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="the [ray] extra is part of `make setup`")
    backend = RayBackend(num_cpus=2)
    yield backend
    ray.shutdown()


def test_permutation_values_equal_local(ray_backend: RayBackend) -> None:
    rng = np.random.default_rng(5)
    game = CentroidGame(rng.uniform(0, 5, (60, 8)), rng.uniform(0, 5, 8))
    remote = permutation_shapley(game, n_permutations=20_000, rng=17, backend=ray_backend)
    local = permutation_shapley(game, n_permutations=20_000, rng=17)
    np.testing.assert_array_equal(remote.values, local.values)
    np.testing.assert_array_equal(remote.stderr, local.stderr)
    assert remote.n_evaluations == local.n_evaluations
    assert "backend=ray, workers=2" in remote.method


def test_sweep_runs_equal_local(ray_backend: RayBackend) -> None:
    grid = SweepGrid(users=(12,), groups=(2, 3), strategies=("random",), metrics=("l2",))
    spec = CrowdSpec(dataset="synthetic", n_users=12)
    config = RoundConfig(n_rounds=10)
    remote = sweep(spec, config, grid, n_runs=5, seed=3, backend=ray_backend)
    local = sweep(spec, config, grid, n_runs=5, seed=3, workers=1)
    np.testing.assert_array_equal(remote.runs["final_distance"], local.runs["final_distance"])
    np.testing.assert_array_equal(remote.points["points"], local.points["points"])
    assert remote.settings["backend"] == "ray"
