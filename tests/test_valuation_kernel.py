"""KernelSHAP through shap's KernelExplainer: exactness, efficiency, seeding, counting, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from crowdtune.valuation import (
    AdditiveGame,
    CentroidGame,
    check_efficiency,
    exact_shapley,
    kernel_shapley,
)


def dirichlet_users(n: int, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(d), size=n), rng.dirichlet(np.ones(d))


class NaNGame:
    """Finite everywhere except the coalition {1, 2}."""

    n_players = 4

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        values = coalitions.sum(axis=1).astype(float)
        values[(coalitions == np.array([False, True, True, False])).all(axis=1)] = np.nan
        return values


def test_additive_game_is_exact_enumerated_and_sampled() -> None:
    small = AdditiveGame(np.array([0.5, -1.0, 2.0, 0.0, 3.5]), constant=4.0)
    result = kernel_shapley(small, rng=0)
    np.testing.assert_allclose(result.values, small.shapley_values(), atol=1e-9)
    # An additive game is linear in the masks, so even sampled coalitions fit it exactly.
    weights = np.random.default_rng(3).normal(size=40)
    large = AdditiveGame(weights, constant=-2.0)
    sampled = kernel_shapley(large, nsamples=2000, rng=0)
    np.testing.assert_allclose(sampled.values, weights, atol=1e-8)
    check_efficiency(sampled, large, rtol=1e-9)


def test_centroid_game_matches_exact_when_enumerated_and_correlates_when_sampled() -> None:
    users, expert = dirichlet_users(8)
    game = CentroidGame(users, expert)
    exact = exact_shapley(game)
    enumerated = kernel_shapley(game, rng=0)  # 10000 samples > 2^8 - 2: every coalition
    np.testing.assert_allclose(enumerated.values, exact.values, atol=1e-9)
    users, expert = dirichlet_users(12)
    larger = CentroidGame(users, expert)
    sampled = kernel_shapley(larger, nsamples=500, rng=0)  # of 2^12 - 2 coalitions
    assert np.corrcoef(sampled.values, exact_shapley(larger).values)[0, 1] > 0.98
    check_efficiency(sampled, larger, rtol=1e-6, atol=1e-9)


def test_result_fields_and_published_method_string() -> None:
    users, expert = dirichlet_users(8, seed=1)
    result = kernel_shapley(CentroidGame(users, expert), rng=0)
    assert result.method == "kernel(nsamples=10000, l1_reg=num_features(8), background=zeros)"
    assert np.isnan(result.stderr).all() and result.stderr.shape == (8,)
    assert result.n_samples == 0
    assert result.seconds >= 0.0


def test_same_seed_same_values_and_global_state_restored() -> None:
    users, expert = dirichlet_users(30, seed=2)
    game = CentroidGame(users, expert)
    np.random.seed(123)  # noqa: NPY002 - checking that the global RNG is left as found
    before = np.random.get_state()  # noqa: NPY002
    first = kernel_shapley(game, nsamples=300, rng=42)
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    second = kernel_shapley(game, nsamples=300, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(first.values, second.values)
    other = kernel_shapley(game, nsamples=300, rng=43)
    assert not np.array_equal(first.values, other.values)


def test_evaluations_are_counted_rows() -> None:
    # v(∅) (the background), v(N) (the instance), then the sampled coalitions.
    assert kernel_shapley(AdditiveGame(np.ones(5)), rng=0).n_evaluations == 2 + (2**5 - 2)
    assert kernel_shapley(AdditiveGame(np.ones(12)), nsamples=500, rng=0).n_evaluations == 502
    assert kernel_shapley(AdditiveGame(np.ones(1)), rng=0).n_evaluations == 2


def test_custom_background_shifts_the_total() -> None:
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    game = AdditiveGame(weights)
    background = np.array([[0, 0, 0, 0], [1, 0, 0, 0]])
    result = kernel_shapley(game, background=background, rng=0)
    # Player 0 is present in half the background rows, so it keeps half its weight.
    np.testing.assert_allclose(result.values, [0.5, 2.0, 3.0, 4.0], atol=1e-9)
    assert "background=custom(2 rows)" in result.method
    assert result.n_evaluations == 2 + 1 + 2 * (2**4 - 2)


def test_non_finite_game_value_names_the_coalition() -> None:
    with pytest.raises(ValueError, match=r"coalition of players \[1, 2\]"):
        kernel_shapley(NaNGame(), rng=0)


def test_bad_arguments_are_named() -> None:
    game = AdditiveGame(np.ones(3))
    with pytest.raises(ValueError, match="nsamples must be a positive integer; got 0"):
        kernel_shapley(game, nsamples=0)
    with pytest.raises(ValueError, match=r"background must have shape \(m, 3\)"):
        kernel_shapley(game, background=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="every entry must be 0 or 1"):
        kernel_shapley(game, background=np.full((1, 3), 0.5))


def test_missing_shap_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "shap", None)
    with pytest.raises(ImportError, match=r'pip install "crowdtune\[shap\]"'):
        kernel_shapley(AdditiveGame(np.ones(3)))
