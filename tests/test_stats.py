"""Correlation estimates against scipy, bootstrap intervals, Fisher-z pooling and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import crowdtune.stats as stats_module
from crowdtune.stats import (
    Correlation,
    bootstrap_mean_ci,
    correlation,
    fisher_z_mean,
    mean_ci,
    t_half_width,
)

METHODS = ["pearson", "spearman", "kendall"]


def bivariate_normal(n: int, rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, noise = rng.normal(size=(2, n))
    return x, rho * x + np.sqrt(1 - rho**2) * noise


@pytest.mark.parametrize("method", METHODS)
def test_estimate_is_scipys(method: str) -> None:
    rng = np.random.default_rng(0)
    x, y = bivariate_normal(80, 0.6, rng)
    y[:10] = np.round(y[:10])  # some ties
    expected = {
        "pearson": scipy.stats.pearsonr,
        "spearman": scipy.stats.spearmanr,
        "kendall": scipy.stats.kendalltau,
    }[method](x, y).statistic
    result = correlation(x, y, method, n_boot=200, rng=1)
    assert result.estimate == pytest.approx(expected, rel=1e-12)
    assert result.method == method and result.n == 80 and result.confidence == 0.95
    assert result.low <= result.estimate <= result.high


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pairwise_kendall", [True, False])
def test_vectorised_resample_statistic_matches_scipy(
    method: str, pairwise_kendall: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pairwise_kendall:
        monkeypatch.setattr(stats_module, "PAIRWISE_KENDALL_MAX_N", 0)
    rng = np.random.default_rng(5)
    x, y = bivariate_normal(30, 0.3, rng)
    index = rng.integers(0, 30, size=(20, 30))  # resamples repeat points: tied pairs
    function = {
        "pearson": scipy.stats.pearsonr,
        "spearman": scipy.stats.spearmanr,
        "kendall": scipy.stats.kendalltau,
    }[method]
    expected = [function(x[row], y[row]).statistic for row in index]
    np.testing.assert_allclose(
        stats_module._statistic(x[index], y[index], method), expected, atol=1e-12
    )


def test_interval_narrows_with_more_points() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 300, 3000):
        result = correlation(*bivariate_normal(n, 0.5, rng), "spearman", n_boot=300, rng=2)
        widths.append(result.high - result.low)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_reproducible_with_seed() -> None:
    x, y = bivariate_normal(50, 0.4, np.random.default_rng(2))
    first = correlation(x, y, "kendall", n_boot=200, rng=7)
    assert first == correlation(x, y, "kendall", n_boot=200, rng=np.random.default_rng(7))
    assert first != correlation(x, y, "kendall", n_boot=200, rng=8)


def test_percentile_interval_covers_rho_in_most_replications() -> None:
    rng = np.random.default_rng(2024)
    covered = 0
    for replication in range(50):
        x, y = bivariate_normal(100, 0.5, rng)
        result = correlation(x, y, "pearson", n_boot=500, rng=replication)
        covered += result.low <= 0.5 <= result.high
    assert covered >= 42  # 95% nominal; P(fewer than 42 of 50) is about 0.1% at 0.93 true cover


def test_confidence_level_orders_intervals() -> None:
    x, y = bivariate_normal(60, 0.5, np.random.default_rng(3))
    wide = correlation(x, y, confidence=0.99, n_boot=500, rng=0)
    narrow = correlation(x, y, confidence=0.5, n_boot=500, rng=0)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_fisher_z_identical_estimates_and_weighting() -> None:
    result = fisher_z_mean([0.3, 0.3, 0.3], [20, 50, 100], method="spearman")
    assert result.estimate == pytest.approx(0.3, abs=1e-12)
    assert result.method == "fisher-z(spearman)" and result.n == 170
    assert result.low < 0.3 < result.high
    # Weighted by n - 3 in z space; the interval is tanh(z ± 1.96 / sqrt(Σ (n - 3))).
    z = (17 * np.arctanh(0.1) + 97 * np.arctanh(0.6)) / 114
    pooled = fisher_z_mean(np.array([0.1, 0.6]), np.array([20, 100]))
    assert pooled.estimate == pytest.approx(np.tanh(z))
    margin = scipy.stats.norm.ppf(0.975) / np.sqrt(114)
    assert (pooled.low, pooled.high) == pytest.approx((np.tanh(z - margin), np.tanh(z + margin)))
    assert fisher_z_mean([1.0, 1.0], [10, 10]).estimate == pytest.approx(1.0)  # clipped, finite


def test_fisher_z_narrows_with_more_runs() -> None:
    one = fisher_z_mean([0.4], [50])
    ten = fisher_z_mean([0.4] * 10, [50] * 10)
    assert ten.high - ten.low < one.high - one.low


def test_to_dict() -> None:
    result = Correlation(method="pearson", estimate=0.5, low=0.4, high=0.6, n=10, confidence=0.95)
    assert result.to_dict() == {
        "method": "pearson",
        "estimate": 0.5,
        "low": 0.4,
        "high": 0.6,
        "n": 10,
        "confidence": 0.95,
    }


def test_correlation_errors_name_the_problem() -> None:
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="same length; got 5 and 4"):
        correlation(x, x[:4])
    with pytest.raises(ValueError, match="at least 3 paired points; got 2"):
        correlation(x[:2], x[:2])
    with pytest.raises(ValueError, match=r"y has 1 non-finite values \(first at index 2: nan\)"):
        correlation(x, np.array([1.0, 2.0, np.nan, 4.0, 5.0]))
    with pytest.raises(ValueError, match="x is constant"):
        correlation(np.ones(5), x)
    with pytest.raises(ValueError, match="unknown correlation method 'pearsonr'"):
        correlation(x, x, "pearsonr")
    with pytest.raises(ValueError, match="n_boot must be at least 1"):
        correlation(x, x, n_boot=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        correlation(x, x, confidence=95)
    with pytest.raises(ValueError, match="must be 1-d"):
        correlation(np.ones((3, 2)), np.ones((3, 2)))


def test_fisher_z_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="same length"):
        fisher_z_mean([0.1, 0.2], [10])
    with pytest.raises(ValueError, match="at least one estimate"):
        fisher_z_mean([], np.array([], dtype=int))
    with pytest.raises(ValueError, match=r"in \[-1, 1\]; got 1.5 at index 1"):
        fisher_z_mean([0.1, 1.5], [10, 10])
    with pytest.raises(ValueError, match="at least 4"):
        fisher_z_mean([0.1, 0.2], [10, 3])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        fisher_z_mean([0.1], [10], confidence=1.0)


def test_bootstrap_mean_interval_matches_scipys_percentile_bootstrap() -> None:
    values = np.random.default_rng(3).exponential(2.0, 150)
    low, high = bootstrap_mean_ci(values, n_bootstrap=4000, seed=1)
    expected = scipy.stats.bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2)
    ).confidence_interval
    assert low < values.mean() < high
    assert low == pytest.approx(expected.low, abs=0.05)
    assert high == pytest.approx(expected.high, abs=0.05)
    assert bootstrap_mean_ci(values, n_bootstrap=500, seed=1) == bootstrap_mean_ci(
        values, n_bootstrap=500, seed=1
    )
    assert all(np.isnan(bootstrap_mean_ci(np.array([]))))


def test_mean_ci_equals_scipy_t_interval() -> None:
    sample = np.random.default_rng(0).normal(3.0, 2.0, 17)
    for level in (0.95, 0.9):
        low, high = scipy.stats.t.interval(
            level, len(sample) - 1, loc=sample.mean(), scale=scipy.stats.sem(sample)
        )
        got = mean_ci(sample, level=level)
        assert got["mean"] == pytest.approx(sample.mean())
        assert got["ci_low"] == pytest.approx(low)
        assert got["ci_high"] == pytest.approx(high)


def test_mean_ci_ignores_nan_and_handles_tiny_samples() -> None:
    assert mean_ci([1.0, np.nan, 3.0])["mean"] == pytest.approx(2.0)
    low, high = scipy.stats.t.interval(0.95, 1, loc=2.0, scale=scipy.stats.sem([1.0, 3.0]))
    assert mean_ci([1.0, np.nan, 3.0])["ci_low"] == pytest.approx(low)
    assert mean_ci([1.0, np.nan, 3.0])["ci_high"] == pytest.approx(high)
    assert mean_ci([4.0]) == {"mean": 4.0, "ci_low": None, "ci_high": None}
    assert mean_ci([]) == {"mean": None, "ci_low": None, "ci_high": None}


def test_t_half_width_works_elementwise_and_has_none_for_one_value() -> None:
    rng = np.random.default_rng(1)
    samples = [rng.normal(size=n) for n in (2, 5, 30)]
    sd = np.array([s.std(ddof=1) for s in samples])
    n = np.array([len(s) for s in samples])
    for width, sample in zip(t_half_width(sd, n), samples, strict=True):
        got = mean_ci(sample)
        assert width == pytest.approx(got["ci_high"] - got["mean"], rel=1e-12)
    assert np.isnan(t_half_width(np.nan, 1))
