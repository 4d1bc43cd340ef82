"""Bradley–Terry leaderboards: ratings with bootstrap intervals and Arena ranks, as tables.

:func:`bradley_terry` checks a battles frame, fits the model of
:mod:`crowdtune.preference.bradley_terry` (ties as half a win or by Davidson's model, optionally
with style control) and reports ratings ``base + scale * theta`` (by default 400 points per
tenfold in the odds, centred on 1000, as Chatbot Arena) in a :class:`Leaderboard`. Intervals are
percentile intervals of the bootstrap replicates; a model's rank is 1 + the number of models whose
lower bound lies above its upper bound, as on the Chatbot Arena leaderboard.

>>> from crowdtune.preference.bradley_terry import synthetic_battles
>>> data = synthetic_battles(n_models=4, n_battles=2000, seed=1)
>>> board = bradley_terry(data.battles, n_bootstrap=200)
>>> list(board.table.columns[:5])
['model', 'rating', 'ci_low', 'ci_high', 'rank']
>>> bool((board.table.ci_low <= board.table.rating).all())
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.csgraph

from crowdtune.preference.bradley_terry import (
    ELO_SCALE,
    STYLE_FEATURES,
    TIE_MODELS,
    battle_arrays,
    battle_units,
    fit_parameters,
    style_differences,
)
from crowdtune.tables import json_records
from crowdtune.validation import check_choice


@dataclass(frozen=True)
class Leaderboard:
    """Ratings of models with bootstrap intervals and Arena ranks.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per model, best first: ``model, rating, ci_low, ci_high, rank, n_battles, wins,
        losses, ties``.
    parameters : pandas.DataFrame
        The non-rating parameters, ``parameter, estimate, ci_low, ci_high``: ``nu`` (Davidson's tie
        parameter) and ``style:<feature>`` (logit per root-mean-square unit of the feature).
    bootstrap : pandas.DataFrame
        Ratings of every replicate, shape (n_bootstrap, n_models), columns in ``table`` order.
    ties, scale, base, anchor, n_battles, n_bootstrap, confidence, seed
        How it was computed.
    """

    table: pd.DataFrame
    parameters: pd.DataFrame
    bootstrap: pd.DataFrame
    ties: str
    scale: float
    base: float
    anchor: str | None
    n_battles: int
    n_bootstrap: int
    confidence: float
    seed: int | None
    style_features: tuple[str, ...] = field(default=())

    @property
    def ratings(self) -> pd.Series:
        """Ratings indexed by model, best first."""
        return self.table.set_index("model")["rating"]

    @property
    def tie_parameter(self) -> float | None:
        """Davidson's nu (``None`` for ``ties="half"``)."""
        rows = self.parameters[self.parameters.parameter == "nu"]
        return float(rows.estimate.iloc[0]) if len(rows) else None

    @property
    def style_coefficients(self) -> pd.DataFrame:
        """The style rows of :attr:`parameters`, ``feature`` in place of ``parameter``."""
        rows = self.parameters[self.parameters.parameter.str.startswith("style:")]
        return rows.assign(feature=rows.parameter.str.removeprefix("style:")).drop(
            columns="parameter"
        )[["feature", "estimate", "ci_low", "ci_high"]]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (without the bootstrap replicates)."""
        return {
            "method": f"bradley-terry(ties={self.ties})",
            "scale": self.scale,
            "base": self.base,
            "anchor": self.anchor,
            "n_battles": self.n_battles,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "style_features": list(self.style_features),
            "models": json_records(self.table),
            "parameters": json_records(self.parameters),
        }


def bradley_terry(
    battles: pd.DataFrame,
    ties: str = "half",
    *,
    scale: float = ELO_SCALE,
    base: float = 1000.0,
    anchor: str | None = None,
    style_control: bool | Sequence[str] = False,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Leaderboard:
    """Fit a Bradley–Terry leaderboard by maximum likelihood, with bootstrap intervals.

    Parameters
    ----------
    battles : pandas.DataFrame
        Columns ``model_a``, ``model_b``, ``label`` (0 A won, 1 B won, 2 tie); with style control
        also ``response_a`` and ``response_b``.
    ties : {"half", "davidson"}, default "half"
        A tie as half a win and half a loss (Chatbot Arena), or Davidson's tie model with nu
        fitted by maximum likelihood.
    scale, base : float
        Ratings are ``base + scale * theta``; the default scale gives 400 points per tenfold odds.
    anchor : str, optional
        A model pinned to ``base`` in the estimate and in every replicate; by default the mean
        strength is pinned to ``base``.
    style_control : bool or sequence of str, default False
        ``True`` for all of :data:`STYLE_FEATURES`, or the names of the features to control for.
        A feature that is zero in every battle is left out.
    n_bootstrap : int, default 1000
        Bootstrap replicates (battles resampled with replacement); 0 for no intervals.
    confidence : float, default 0.95
        Coverage of the percentile intervals.
    seed : int, optional
        Seed of the resampling.

    Returns
    -------
    Leaderboard

    Raises
    ------
    ValueError
        For missing columns, bad labels, a model against itself, an unknown ``ties``, style
        feature or anchor, Davidson ties without a single tie, or ``confidence`` outside (0, 1).
    """
    check_choice(ties, TIE_MODELS, "tie model")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be at least 0; got {n_bootstrap}")
    models, a, b, labels = battle_arrays(battles)
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor {anchor!r} is not among the {len(models)} models in the battles")
    if ties == "davidson" and not (labels == 2).any():
        raise ValueError("ties='davidson' needs at least one tie to fit nu; use ties='half'")
    names: tuple[str, ...] = ()
    features = np.empty((len(a), 0))
    if style_control:
        names = STYLE_FEATURES if style_control is True else tuple(style_control)
        missing = [c for c in ("response_a", "response_b") if c not in battles.columns]
        if missing:
            raise ValueError(f"style control needs column(s) {missing} in the battles")
        features = style_differences(battles["response_a"], battles["response_b"], names)
        # Divide by the root mean square without centring: centring would make a battle of
        # equal style favour whichever side is shown as A.
        rms = np.sqrt(np.mean(features**2, axis=0))
        keep = rms > 0
        names, features = tuple(np.asarray(names)[keep]), features[:, keep] / rms[keep]

    first, second, unit_features, counts = battle_units(a, b, labels, features)
    n_parts, part = scipy.sparse.csgraph.connected_components(
        scipy.sparse.coo_matrix((np.ones(len(first)), (first, second)), shape=(len(models),) * 2),
        directed=False,
    )
    if n_parts > 1:
        warnings.warn(
            f"the battles split into {n_parts} groups of models that never met (e.g. "
            f"{list(models[part == part[0]][:3])} and {list(models[part != part[0]][:3])}); "
            "ratings are only comparable within a group",
            stacklevel=2,
        )
    point, replicates = fit_parameters(
        first, second, unit_features, counts, len(models),
        davidson=ties == "davidson", n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
    return _leaderboard(
        models, a, b, labels, point, replicates, names,
        ties=ties, scale=scale, base=base, anchor=anchor, confidence=confidence, seed=seed,
    )  # fmt: skip


def _leaderboard(
    models: pd.Index,
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    point: np.ndarray,
    replicates: np.ndarray,
    style_names: tuple[str, ...],
    **how: object,
) -> Leaderboard:
    """Turn fitted parameters into the tidy tables of a :class:`Leaderboard`."""
    m = len(models)
    scale, base, anchor, confidence = (how["scale"], how["base"], how["anchor"], how["confidence"])
    assert isinstance(scale, float | int) and isinstance(base, float | int)
    assert isinstance(confidence, float)

    def to_ratings(theta: np.ndarray) -> np.ndarray:
        if anchor is None:
            return base + scale * (theta - theta.mean(axis=1, keepdims=True))
        column = int(np.flatnonzero(models == anchor)[0])
        return base + scale * (theta - theta[:, column : column + 1])

    rating = to_ratings(point[None, :m])[0]
    boot = to_ratings(replicates[:, :m])
    tail = (1 - confidence) / 2
    if len(boot):
        low, high = np.quantile(boot, [tail, 1 - tail], axis=0)
        rank = 1 + np.sum(low[None, :] > high[:, None], axis=1)
    else:
        low = high = np.full(m, np.nan)
        rank = 1 + np.argsort(np.argsort(-rating))
    won = np.bincount(a[labels == 0], minlength=m) + np.bincount(b[labels == 1], minlength=m)
    lost = np.bincount(a[labels == 1], minlength=m) + np.bincount(b[labels == 0], minlength=m)
    tied = np.bincount(a[labels == 2], minlength=m) + np.bincount(b[labels == 2], minlength=m)
    table = pd.DataFrame({
        "model": models, "rating": rating, "ci_low": low, "ci_high": high, "rank": rank,
        "n_battles": won + lost + tied, "wins": won, "losses": lost, "ties": tied,
    })  # fmt: skip
    order = np.lexsort((table.model.to_numpy(), -rating))
    table = table.iloc[order].reset_index(drop=True)

    extra_names = [f"style:{n}" for n in style_names] + (
        ["nu"] if how["ties"] == "davidson" else []
    )
    extra, extra_boot = point[m:].copy(), replicates[:, m:].copy()
    if how["ties"] == "davidson":  # report nu itself, not its logarithm
        extra[-1], extra_boot[:, -1] = np.exp(extra[-1]), np.exp(extra_boot[:, -1])
    extra_low, extra_high = (
        np.quantile(extra_boot, [tail, 1 - tail], axis=0) if len(boot)
        else np.full((2, len(extra)), np.nan)
    )  # fmt: skip
    parameters = pd.DataFrame(
        {"parameter": extra_names, "estimate": extra, "ci_low": extra_low, "ci_high": extra_high}
    )
    seed = how["seed"]
    return Leaderboard(
        table=table,
        parameters=parameters,
        bootstrap=pd.DataFrame(boot[:, order], columns=table.model.to_numpy()),
        ties=str(how["ties"]),
        scale=float(scale),
        base=float(base),
        anchor=anchor if anchor is None else str(anchor),
        n_battles=len(a),
        n_bootstrap=len(boot),
        confidence=confidence,
        seed=seed if seed is None else int(seed),  # type: ignore[call-overload]
        style_features=style_names,
    )
