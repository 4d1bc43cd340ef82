"""How well point schemes credit individual contributors, measured per run.

Two yardsticks for the points a batch of runs hands out:

- agreement with accurate Shapley values of the run's centroid game
  (:class:`crowdtune.valuation.CentroidGame`: a coalition is worth how close its members' mean is
  to the expert), as Spearman and Pearson correlations across the run's users;
- whether adversaries end up at the bottom of the credit (:func:`adversary_bottom_rate`).

Estimating Shapley values is :mod:`crowdtune.valuation`'s job; this module only calls it, with
one generator per run (``SeedSequence(seed, spawn_key=(run,))``).

>>> import numpy as np
>>> points = np.array([[0.0, 5.0, 6.0, 7.0, 8.0], [9.0, 5.0, 6.0, 7.0, 8.0]])
>>> adversary = np.array([[True, False, False, False, False]] * 2)
>>> adversary_bottom_rate(points, adversary, fraction=0.2)
0.5
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from crowdtune.crowd.simulation.experiments import (
    CrowdSpec,
    build_setups,
    load_crowd_matrix,
    run_cell,
)
from crowdtune.crowd.simulation.rounds import RoundConfig
from crowdtune.stats import fisher_z_mean
from crowdtune.validation import check_choice
from crowdtune.valuation.games import CentroidGame
from crowdtune.valuation.methods import estimate_shapley

#: How a run's Shapley values can be estimated (see :func:`centroid_shapley`).
SHAPLEY_METHODS = ("exact", "permutation", "kernel")


def _check_batch(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n_runs, n_users); got shape {array.shape}")
    return array


def adversary_bottom_rate(
    points: np.ndarray, adversary_mask: np.ndarray, fraction: float = 0.2
) -> float:
    """Share of runs in which every adversary is in the bottom ``fraction`` of credit.

    In a run of N users the bottom holds ``floor(fraction * N)`` users. Ties count against the
    scheme: an adversary is in the bottom only when at most that many users (itself included)
    have points less than or equal to its own, so a scheme that gives everybody the same points
    never passes.

    Parameters
    ----------
    points : ndarray of shape (n_runs, n_users)
        Final points.
    adversary_mask : ndarray of bool, shape (n_runs, n_users)
        Which users are adversaries; every run needs at least one.
    fraction : float, default=0.2
        Size of the bottom, in (0, 1].
    """
    points = _check_batch(points, "points")
    mask = np.asarray(adversary_mask, dtype=bool)
    if mask.shape != points.shape:
        raise ValueError(
            f"adversary_mask must have the shape of points {points.shape}; got {mask.shape}"
        )
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not mask.any(axis=1).all():
        runs = np.flatnonzero(~mask.any(axis=1)).tolist()
        raise ValueError(f"every run needs at least one adversary; runs {runs} have none")
    bottom = math.floor(fraction * points.shape[1])
    worst = np.where(mask, points, -np.inf).max(axis=1)  # the best-paid adversary of each run
    at_or_below = (points <= worst[:, None]).sum(axis=1)
    return float(np.mean(at_or_below <= bottom))


def centroid_shapley(
    users: np.ndarray,
    expert: np.ndarray,
    *,
    metric: str = "l2",
    method: str = "permutation",
    n_permutations: int = 2000,
    seed: int = 0,
    runs: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values and standard errors of every run's centroid game, each (n_runs, n_users).

    ``method`` is ``permutation`` (:func:`crowdtune.valuation.permutation_shapley`, with
    ``n_permutations`` per run), ``exact`` (at most 20 users) or ``kernel`` (SHAP's
    KernelExplainer with the published settings: the estimate the published correlations used).
    The run numbered ``runs[i]`` (default: ``i``) draws from ``SeedSequence(seed,
    spawn_key=(runs[i],))``, so a run's values do not depend on the batch.
    """
    check_choice(method, SHAPLEY_METHODS, "Shapley method")
    users = np.asarray(users, dtype=float)
    expert = np.asarray(expert, dtype=float)
    if users.ndim != 3 or expert.shape != (users.shape[0], users.shape[2]):
        raise ValueError(
            f"users must have shape (n_runs, n_users, n_dims) and expert (n_runs, n_dims); "
            f"got {users.shape} and {expert.shape}"
        )
    numbers = list(range(users.shape[0]) if runs is None else runs)
    if len(numbers) != users.shape[0]:
        raise ValueError(f"runs must number the {users.shape[0]} runs; got {len(numbers)}")
    values, stderr = np.empty(users.shape[:2]), np.empty(users.shape[:2])
    for i, run in enumerate(numbers):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(run,)))
        game = CentroidGame(users[i], expert[i], metric)
        budget = n_permutations if method == "permutation" else None
        result = estimate_shapley(game, method, seed=rng, n_permutations=budget)
        values[i], stderr[i] = result.values, result.stderr
    return values, stderr


def summarize_agreement(per_run: pd.DataFrame, n_users: int) -> pd.DataFrame:
    """Mean Spearman and Pearson per scheme (and any other label columns) with 95% CIs.

    Correlations are averaged on Fisher's z scale across runs, each weighted by ``n_users - 3``
    (:func:`crowdtune.stats.fisher_z_mean`); runs with constant points are left out.
    """
    labels = [c for c in per_run.columns if c not in ("run", "spearman", "pearson")]
    rows = []
    for key, frame in per_run.groupby(labels, sort=False):
        row = dict(zip(labels, key if isinstance(key, tuple) else (key,), strict=True))
        for name in ("spearman", "pearson"):
            estimates = frame[name].dropna().to_numpy()
            row["runs"] = len(estimates)
            if len(estimates) == 0:
                row.update({name: np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan})
                continue
            mean = fisher_z_mean(estimates, np.full(len(estimates), n_users), method=name)
            row.update({name: mean.estimate, f"{name}_low": mean.low, f"{name}_high": mean.high})
        rows.append(row)
    return pd.DataFrame(rows)


def shapley_agreement(points: Mapping[str, np.ndarray], shapley: np.ndarray) -> pd.DataFrame:
    """Spearman and Pearson correlation of each scheme's points with Shapley values, per run.

    Parameters
    ----------
    points : mapping of str to ndarray of shape (n_runs, n_users)
        Final points by scheme name.
    shapley : ndarray of shape (n_runs, n_users)

    Returns
    -------
    DataFrame
        One row per scheme and run: ``scheme``, ``run``, ``spearman``, ``pearson`` (NaN where a
        run's points are all equal).
    """
    shapley = _check_batch(shapley, "shapley")
    rows = []
    for name, scheme_points in points.items():
        scheme_points = _check_batch(scheme_points, f"points of {name!r}")
        if scheme_points.shape != shapley.shape:
            raise ValueError(
                f"points of {name!r} have shape {scheme_points.shape}, "
                f"Shapley values {shapley.shape}"
            )
        for run, (p, phi) in enumerate(zip(scheme_points, shapley, strict=True)):
            constant = np.ptp(p) == 0
            rows.append(
                {
                    "scheme": name,
                    "run": run,
                    "spearman": np.nan if constant else float(stats.spearmanr(p, phi)[0]),
                    "pearson": np.nan if constant else float(stats.pearsonr(p, phi)[0]),
                }
            )
    return pd.DataFrame(rows)


@dataclass
class CreditComparison:
    """Point schemes against accurate Shapley values on the same seeded runs.

    Attributes
    ----------
    shapley : ndarray of shape (n_runs, n_users)
        Each run's Shapley values of its centroid game (permutation estimate).
    points : dict of str to ndarray of shape (n_runs, n_users)
        Final points of each scheme; run ``i`` has the same crowd under every scheme.
    per_run : DataFrame
        ``scheme``, ``run``, ``spearman``, ``pearson`` (see :func:`shapley_agreement`).
    summary : DataFrame
        Per scheme: mean Spearman and Pearson with 95% CIs (see :func:`summarize_agreement`).
    """

    shapley: np.ndarray
    points: dict[str, np.ndarray]
    per_run: pd.DataFrame
    summary: pd.DataFrame


def compare_credit(
    spec: CrowdSpec,
    config: RoundConfig,
    schemes: Sequence[str],
    *,
    n_runs: int = 50,
    seed: int = 1,
    n_permutations: int = 1000,
) -> CreditComparison:
    """Run ``n_runs`` seeded runs under each scheme and correlate final points with Shapley values.

    The runs share their crowds across schemes (same seeds), so the comparison is paired.
    """
    matrix = load_crowd_matrix(spec)
    points = {
        scheme: run_cell(matrix, spec, dataclasses.replace(config, scheme=scheme), n_runs, seed)[0][
            "points"
        ]
        for scheme in schemes
    }
    setups = build_setups(matrix, spec, range(n_runs), seed)
    shapley, _ = centroid_shapley(
        setups.users, setups.expert, metric=config.metric, n_permutations=n_permutations, seed=seed
    )
    per_run = shapley_agreement(points, shapley)
    return CreditComparison(shapley, points, per_run, summarize_agreement(per_run, spec.n_users))
