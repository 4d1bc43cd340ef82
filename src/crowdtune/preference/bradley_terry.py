"""The Bradley–Terry model of pairwise battles: arrays, maximum-likelihood fit, bootstrap, Elo.

A battle is one row of a comparisons frame (:func:`crowdtune.records.comparisons_frame`):
``model_a``, ``model_b`` and ``label`` (0 = A won, 1 = B won, 2 = tie); :func:`battle_arrays`
turns a frame into integer arrays. The model has log-strengths ``theta``, with
P(a beats b) = sigmoid(theta_a - theta_b). Ties either count as half a win and half a loss
(``"half"``, Chatbot Arena) or follow Davidson's (1970) model with a fitted tie parameter nu
(``"davidson"``):

    P(a wins) = pi_a / (pi_a + pi_b + nu sqrt(pi_a pi_b)),   P(tie) = nu sqrt(pi_a pi_b) / (...).

Style control (Chatbot Arena's): the logit gains ``beta . f`` with ``f`` the battle's normalised
style differences ``(s_a - s_b) / (s_a + s_b)`` (:func:`style_differences`: length, and markdown
headers, list items and bold spans); ratings are then those of equal style.

Fitting works on *units* (:func:`battle_units`), the distinct (pair, style) rows with their counts
of each outcome: the pairs of models without style control, the battles with it. Every bootstrap
replicate is one multinomial draw over the units' outcome cells (the same as resampling battles
with replacement), and :func:`fit_parameters` fits all replicates at once by a batched damped
Newton method in numpy. :func:`online_elo` is the sequential Elo of FastChat, and
:func:`synthetic_battles` draws battles from a known model.

Ratings, intervals and ranks, as tables, are :mod:`crowdtune.preference.leaderboard`'s.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.special
from threadpoolctl import threadpool_limits

from crowdtune.validation import check_choice

#: How ties are modelled.
TIE_MODELS = ("half", "davidson")
#: Style features :func:`style_differences` knows, in the order in which
#: :func:`~crowdtune.preference.leaderboard.bradley_terry` with ``style_control=True`` uses them.
STYLE_FEATURES = ("length", "headers", "lists", "bold")
#: Elo scale: rating points per unit of natural log-odds (400 points per tenfold odds).
ELO_SCALE = 400 / math.log(10)
#: L2 penalty (in log-likelihood units) on every parameter. It keeps replicates in which a model
#: wins (or loses) every battle finite; against the likelihood of even one battle it moves
#: ratings by well under 0.01 points.
L2_PENALTY = 1e-6
#: Weight of the penalty (sum of strengths)^2 / 2. The likelihood only sees differences of
#: strengths, so this term is zero at the optimum and changes no rating: it fixes the free shift
#: (mean strength 0) and keeps the Hessian well conditioned.
GAUGE_PENALTY = 1.0
#: Largest Newton step, in natural-log units of any parameter (damping for separable replicates).
MAX_STEP = 4.0
#: Chord steps (fixed Hessian) a bootstrap replicate takes before it falls back to Newton steps.
CHORD_STEPS = 50
#: Largest bootstrap block, in values per (replicates, cells) array. Blocks of a few MB are
#: reused by the allocator; larger arrays are fresh memory maps, whose page faults cost more
#: than the arithmetic.
BOOT_BLOCK = 2**20

_STYLE_PATTERNS = {
    "headers": re.compile(r"^#{1,6} ", re.MULTILINE),
    "lists": re.compile(r"^\s*(?:[-*+]|\d+\.) ", re.MULTILINE),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


def battle_arrays(battles: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray]:
    """Model index and integer arrays (a, b, label) of a battles frame, or a ``ValueError``."""
    missing = [c for c in ("model_a", "model_b", "label") if c not in battles.columns]
    if missing:
        raise ValueError(f"battles lack column(s) {missing}; they have {list(battles.columns)}")
    if len(battles) == 0:
        raise ValueError("battles are empty: a leaderboard needs at least one battle")
    for column in ("model_a", "model_b"):
        bad = battles[column].isna().to_numpy()
        if bad.any():
            raise ValueError(f"battles: {column} is missing in row {int(np.flatnonzero(bad)[0])}")
    labels = battles["label"].to_numpy()
    if not np.issubdtype(labels.dtype, np.integer) or not np.isin(labels, (0, 1, 2)).all():
        bad_row = int(np.flatnonzero(~np.isin(labels, (0, 1, 2)))[0]) if labels.size else 0
        raise ValueError(
            f"battles: label must be 0 (A won), 1 (B won) or 2 (tie); row {bad_row} has "
            f"{labels[bad_row]!r}"
        )
    codes, models = pd.factorize(pd.concat([battles["model_a"], battles["model_b"]]), sort=True)
    a, b = codes[: len(battles)], codes[len(battles) :]
    if (a == b).any():
        row = int(np.flatnonzero(a == b)[0])
        raise ValueError(f"battles: row {row} pits {models[a[row]]!r} against itself")
    return pd.Index(models), a, b, labels.astype(np.int64)


def style_differences(
    response_a: Sequence[str] | pd.Series,
    response_b: Sequence[str] | pd.Series,
    features: Sequence[str] = STYLE_FEATURES,
) -> np.ndarray:
    """Normalised style differences ``(s_a - s_b) / (s_a + s_b)`` of shape (n, len(features)).

    ``length`` counts characters, ``headers`` markdown headings, ``lists`` list items and ``bold``
    bold spans; a pair where both counts are zero gets 0.
    """
    for name in features:
        check_choice(name, STYLE_FEATURES, "style feature")
    out = np.empty((len(response_a), len(features)))
    for k, name in enumerate(features):
        if name == "length":
            count = np.vectorize(len, otypes=[float])
        else:
            pattern = _STYLE_PATTERNS[name]
            count = np.vectorize(lambda s, p=pattern: len(p.findall(s)), otypes=[float])
        s_a, s_b = (
            count(np.asarray(response_a, dtype=object)),
            count(np.asarray(response_b, dtype=object)),
        )
        total = s_a + s_b
        out[:, k] = np.divide(s_a - s_b, total, out=np.zeros_like(total), where=total > 0)
    return out


def battle_units(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge battles into units: (first, second, features (U, p), counts (U, 3)).

    Each battle is turned so that ``first < second`` (a swap exchanges the labels A and B and
    negates the style differences), then identical (first, second, features) rows are merged;
    ``counts`` holds how often ``first`` won, ``second`` won and they tied.
    """
    swap = a > b
    first, second = np.where(swap, b, a), np.where(swap, a, b)
    outcome = np.where(swap & (labels < 2), 1 - labels, labels)
    f = np.where(swap[:, None], -features, features)
    keys = np.column_stack([first, second, f])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel() * 3 + outcome, minlength=3 * len(unique))
    return (
        unique[:, 0].astype(np.int64),
        unique[:, 1].astype(np.int64),
        unique[:, 2:],
        counts.reshape(-1, 3).astype(float),
    )


class _Design:
    """Sparse maps from units to parameters, built once and shared by every Newton iteration."""

    def __init__(
        self,
        first: np.ndarray,
        second: np.ndarray,
        features: np.ndarray,
        n_models: int,
        davidson: bool,
    ) -> None:
        n_units = len(first)
        rows = np.repeat(np.arange(n_units), 2)
        cols = np.column_stack([first, second]).ravel()
        signs = np.tile([1.0, -1.0], n_units)
        #: (U, m): e_first - e_second, so d = theta @ diff.T.
        self.diff = scipy.sparse.csr_matrix((signs, (rows, cols)), shape=(n_units, n_models))
        pairs, self.pair_of_unit = np.unique(
            np.column_stack([first, second]), axis=0, return_inverse=True
        )
        self.pair_of_unit = self.pair_of_unit.ravel()
        self.pair_first, self.pair_second = pairs[:, 0], pairs[:, 1]
        #: (U, n_pairs) indicator, to sum unit curvatures per pair of models.
        self.to_pair = scipy.sparse.csr_matrix(
            (np.ones(n_units), (np.arange(n_units), self.pair_of_unit)),
            shape=(n_units, len(pairs)),
        )
        self.features = features
        self.n_models = n_models
        self.n_style = features.shape[1]
        self.davidson = davidson
        self.n_params = n_models + self.n_style + int(davidson)

    def rows_times(self, values: np.ndarray, matrix: scipy.sparse.csr_matrix) -> np.ndarray:
        """``values @ matrix`` for dense (B, U) values and a sparse (U, k) matrix."""
        return np.asarray((matrix.T @ values.T).T)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """d = theta_first - theta_second + beta . f, shape (B, U)."""
        m, p = self.n_models, self.n_style
        d = np.asarray((self.diff @ x[:, :m].T).T)
        if p:
            d += x[:, m : m + p] @ self.features.T
        return d

    def summaries(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """What the likelihood needs from counts (B, U, 3): (B, U) arrays, computed once per fit."""
        won, lost, tied = counts[..., 0], counts[..., 1], counts[..., 2]
        total = (won + lost + tied).astype(float)
        if self.davidson:
            return {"margin": (won - lost) / 2, "tied": tied.astype(float), "total": total}
        return {"score": won + tied / 2, "total": total}

    def _terms(
        self, x: np.ndarray, data: dict[str, np.ndarray], curvature: bool = True
    ) -> dict[str, np.ndarray]:
        """Per-unit derivatives of the log-likelihood in the logit d (and in log nu), (B, U) each.

        Only the first derivatives with ``curvature=False`` (all a chord step needs).
        """
        # Beyond |d| = 200 every probability is 0 or 1 to double precision; clipping keeps the
        # exponentials finite.
        d = np.clip(self.logits(x), -200, 200)
        total = data["total"]
        if not self.davidson:
            prob_first = scipy.special.expit(d)
            terms = {"grad_d": data["score"] - total * prob_first}
            if curvature:
                terms["curv_d"] = total * prob_first * (1 - prob_first)
            return terms
        # With e = exp(-d/2): P(first) = 1 / (1 + e (e + nu)), P(second) likewise with 1/e, and
        # P(tie) = nu e / (1 + e^2 + nu e).
        nu, e = np.exp(x[:, -1:]), np.exp(-d / 2)
        prob = (
            1 / (1 + e * (e + nu)),
            1 / (1 + (1 + nu * e) / (e * e)),
            nu * e / (1 + e * (e + nu)),
        )
        terms = {
            "grad_d": data["margin"] - total * (prob[0] - prob[1]) / 2,
            "grad_eta": data["tied"] - total * prob[2],
        }
        if curvature:
            terms["curv_d"] = total * (prob[0] + prob[1] - (prob[0] - prob[1]) ** 2) / 4
            terms["curv_eta"] = total * prob[2] * (1 - prob[2])
            terms["cross"] = -total * prob[2] * (prob[0] - prob[1]) / 2
        return terms

    def gradient(self, x: np.ndarray, terms: dict[str, np.ndarray]) -> np.ndarray:
        """Gradient of the penalised log-likelihood, shape (B, q)."""
        m, p = self.n_models, self.n_style
        grad = np.empty_like(x)
        grad[:, :m] = self.rows_times(terms["grad_d"], self.diff)
        if p:
            grad[:, m : m + p] = terms["grad_d"] @ self.features
        if self.davidson:
            grad[:, -1] = np.sum(terms["grad_eta"], axis=1)
        grad[:, :m] -= GAUGE_PENALTY * np.sum(x[:, :m], axis=1, keepdims=True)
        return grad - L2_PENALTY * x

    def hessian(self, terms: dict[str, np.ndarray]) -> np.ndarray:
        """Negative Hessian of the penalised log-likelihood, shape (B, q, q)."""
        m, p, q = self.n_models, self.n_style, self.n_params
        curv_d = terms["curv_d"]
        hess = np.zeros((len(curv_d), q, q))
        pair_curv = self.rows_times(curv_d, self.to_pair)
        hess[:, self.pair_first, self.pair_second] = -pair_curv
        hess[:, self.pair_second, self.pair_first] = -pair_curv
        hess[:, np.arange(m), np.arange(m)] = self.rows_times(curv_d, abs(self.diff))
        for k in range(p):
            cross = self.rows_times(curv_d * self.features[:, k], self.diff)
            hess[:, :m, m + k] = hess[:, m + k, :m] = cross
        if p:
            hess[:, m : m + p, m : m + p] = np.einsum(
                "bu,uk,ul->bkl", curv_d, self.features, self.features
            )
        if self.davidson:
            cross_d = terms["cross"]
            hess[:, -1, -1] = np.sum(terms["curv_eta"], axis=1)
            hess[:, :m, -1] = hess[:, -1, :m] = self.rows_times(cross_d, self.diff)
            if p:
                hess[:, m : m + p, -1] = hess[:, -1, m : m + p] = cross_d @ self.features
        hess[:, :m, :m] += GAUGE_PENALTY
        hess[:, np.arange(q), np.arange(q)] += L2_PENALTY
        return hess

    def fit(
        self,
        counts: np.ndarray,
        start: np.ndarray,
        fixed_hessian: np.ndarray | None = None,
        tol: float = 1e-8,
        max_iter: int = 200,
    ) -> np.ndarray:
        """Maximise the penalised likelihood of every replicate at once.

        ``counts`` has shape (B, U, 3), ``start`` (B, q). Damped Newton steps (at most
        :data:`MAX_STEP` in any coordinate) until the largest step is below ``tol``; the objective
        is concave, so this is the optimum. With ``fixed_hessian`` (q, q), the Hessian of the full
        data at its optimum, bootstrap replicates first take chord steps ``H0^-1 g`` (a gradient
        per step, no new Hessian): a replicate's Hessian differs from ``H0`` only by resampling
        noise, so these converge linearly and fast; the few that stall finish with Newton steps.
        """
        done = start.copy()
        # The working set holds only unconverged replicates; it is compacted as they finish.
        index, x, data = np.arange(len(done)), start.copy(), self.summaries(counts)

        def keep(mask: np.ndarray) -> None:
            nonlocal index, x, data
            done[index] = x
            if not mask.all():
                index, x = index[mask], x[mask]
                data = {k: v[mask] for k, v in data.items()}

        if fixed_hessian is not None:
            factor = scipy.linalg.cho_factor(fixed_hessian)
            smallest = np.full(len(x), np.inf)
            for _ in range(CHORD_STEPS):
                grad = self.gradient(x, self._terms(x, data, curvature=False))
                step = scipy.linalg.cho_solve(factor, grad.T).T
                size = np.max(np.abs(step), axis=1)
                # The max-norm of converging steps may wobble; a step twice the smallest so far,
                # or a huge one, means the chord diverges for that replicate: Newton takes over.
                ok = (size < 2 * smallest) & (size < MAX_STEP)
                x[ok] += step[ok]
                unfinished = ~ok | (size > tol)
                smallest = np.where(ok, np.minimum(size, smallest), -np.inf)[unfinished]
                keep(unfinished)
                if not np.isfinite(smallest).any():
                    break
        for _ in range(max_iter):
            if not len(x):
                return done
            terms = self._terms(x, data)
            grad, hess = self.gradient(x, terms), self.hessian(terms)
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
            size = np.max(np.abs(step), axis=1)
            x += step * np.minimum(1.0, MAX_STEP / np.maximum(size, 1e-300))[:, None]
            keep(size > tol)
        if not len(x):
            return done
        raise RuntimeError(
            f"Bradley–Terry fit did not converge in {max_iter} Newton steps for {len(x)} of "
            f"{len(done)} replicates"
        )


def fit_parameters(
    first: np.ndarray,
    second: np.ndarray,
    features: np.ndarray,
    counts: np.ndarray,
    n_models: int,
    *,
    davidson: bool,
    n_bootstrap: int,
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Penalised maximum-likelihood parameters of the units of :func:`battle_units`, and of
    ``n_bootstrap`` bootstrap replicates.

    Returns
    -------
    (point, replicates)
        Shapes (q,) and (n_bootstrap, q). The q parameters are the ``n_models`` natural-log
        strengths (mean zero), then one coefficient per style feature (column of ``features``),
        then, with ``davidson``, log nu.
    """
    design = _Design(first, second, features, n_models, davidson)
    # One BLAS thread: the solves are small, and BLAS threads would contend with the bootstrap's.
    with threadpool_limits(1, user_api="blas"):
        point = design.fit(counts[None], np.zeros((1, design.n_params)))
        replicates = _bootstrap(design, counts, point, n_bootstrap, seed)
    return point[0], replicates


def _bootstrap(
    design: _Design, counts: np.ndarray, point: np.ndarray, n_bootstrap: int, seed: int | None
) -> np.ndarray:
    """Parameters of ``n_bootstrap`` replicates, shape (n_bootstrap, q).

    A replicate is one multinomial draw of ``n`` battles over the units' outcome cells, which is
    resampling the battles with replacement. Blocks of replicates run on a thread each (NumPy
    releases the GIL), each block with its own generator spawned from ``seed``, so the numbers
    do not depend on the number of threads.
    """
    if n_bootstrap == 0:
        return np.empty((0, design.n_params))
    cells = counts.ravel()
    n_battles = int(round(cells.sum()))
    hessian = design.hessian(design._terms(point, design.summaries(counts[None])))[0]
    block = max(1, BOOT_BLOCK // max(cells.size, design.n_params**2))
    sizes = [min(block, n_bootstrap - start) for start in range(0, n_bootstrap, block)]
    streams = np.random.SeedSequence(seed).spawn(len(sizes))

    def run(size: int, stream: np.random.SeedSequence) -> np.ndarray:
        drawn = np.random.default_rng(stream).multinomial(n_battles, cells / cells.sum(), size)
        return design.fit(drawn.reshape(size, -1, 3), np.repeat(point, size, axis=0), hessian)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        return np.concatenate(list(pool.map(run, sizes, streams)))


def online_elo(
    battles: pd.DataFrame, k: float = 4.0, scale: float = 400.0, base: float = 1000.0
) -> pd.Series:
    """Sequential Elo ratings (FastChat's ``compute_online_elo``), in the order of the rows.

    Each battle moves both ratings by ``k * (score - expected)``, with expected score
    ``1 / (1 + 10 ** ((r_other - r_self) / scale))`` and a tie scoring 0.5. The result depends on
    the order of the battles, unlike the maximum-likelihood fit. Returns ratings indexed by model,
    best first.
    """
    models, a, b, labels = battle_arrays(battles)
    rating = np.full(len(models), float(base))
    score_a = np.array([1.0, 0.0, 0.5])[labels]
    for i, j, s in zip(a.tolist(), b.tolist(), score_a.tolist(), strict=True):
        expected = 1 / (1 + 10 ** ((rating[j] - rating[i]) / scale))
        rating[i] += k * (s - expected)
        rating[j] -= k * (s - expected)
    return pd.Series(rating, index=models, name="rating").sort_values(ascending=False)


@dataclass(frozen=True)
class SyntheticBattles:
    """Battles drawn from a known Davidson–Bradley–Terry model (see :func:`synthetic_battles`)."""

    battles: pd.DataFrame
    strengths: pd.Series  # natural-log strengths, mean zero, indexed by model
    tie_parameter: float  # Davidson's nu (0 when there are no ties)


def synthetic_battles(
    n_models: int = 10,
    n_battles: int = 10_000,
    seed: int = 0,
    tie_rate: float = 0.0,
    *,
    spread: float = 1.0,
    length_effect: float = 0.0,
) -> SyntheticBattles:
    """Battles between random pairs of models from a known Davidson–Bradley–Terry model.

    Strengths are normal with standard deviation ``spread`` (natural-log units), centred to mean
    zero. Davidson's nu is chosen so that the expected share of ties over the drawn pairs is
    ``tie_rate``. With ``length_effect`` the frame also has ``response_a``/``response_b`` texts
    whose lengths vary by model (lognormal around a per-model mean), and the logit of every battle
    gains ``length_effect`` times the normalised length difference.
    """
    if not 0 <= tie_rate < 1:
        raise ValueError(f"tie_rate must be in [0, 1); got {tie_rate}")
    if n_models < 2:
        raise ValueError(f"synthetic battles need at least 2 models; got {n_models}")
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, spread, n_models)
    theta -= theta.mean()
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    d = theta[a] - theta[b]
    frame: dict[str, object] = {}
    if length_effect:
        typical = rng.uniform(50, 400, n_models)
        length_a = np.maximum(1, rng.lognormal(np.log(typical[a]), 0.3)).astype(int)
        length_b = np.maximum(1, rng.lognormal(np.log(typical[b]), 0.3)).astype(int)
        d = d + length_effect * (length_a - length_b) / (length_a + length_b)
        frame["response_a"] = ["x" * n for n in length_a]
        frame["response_b"] = ["x" * n for n in length_b]
    cosh = 2 * np.cosh(d / 2)
    nu = 0.0
    if tie_rate > 0:
        nu = scipy.optimize.brentq(lambda v: np.mean(v / (cosh + v)) - tie_rate, 1e-12, 1e6)
    p_tie = nu / (cosh + nu)
    p_a = (1 - p_tie) / (1 + np.exp(-d))
    u = rng.random(n_battles)
    labels = np.where(u < p_a, 0, np.where(u < p_a + p_tie, 2, 1))
    names = np.array([f"model-{i:03d}" for i in range(n_models)])
    battles = pd.DataFrame({"model_a": names[a], "model_b": names[b], "label": labels, **frame})
    return SyntheticBattles(battles, pd.Series(theta, index=names, name="strength"), float(nu))
