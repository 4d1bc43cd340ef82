"""KernelSHAP through SHAP's ``KernelExplainer``: the Crowd-SFT paper's comparison anchor.

The paper reports Shapley values of its point game computed with ``shap.KernelExplainer``. This
module reproduces those settings on any :class:`~crowdtune.valuation.games.Game` so crowdtune's own
estimators can be compared against them; it is not the recommended estimator (use
:func:`~crowdtune.valuation.estimators.permutation_shapley`, which gives standard errors and scales
to thousands of players).

Published settings, the defaults here:

- the model maps a ``(k, n)`` 0/1 matrix of coalition masks to ``game.value(mask.astype(bool))``;
- the background is one all-zeros row (an absent player is 0) and the explained instance is the
  all-ones row, so KernelSHAP's ``f(x) - E[f(background)]`` is ``v(N) - v(∅)``;
- ``nsamples=10000`` coalitions and ``l1_reg="num_features(N)"`` with ``N`` the number of players.

SHAP is an optional dependency: ``pip install "crowdtune[shap]"``.

>>> import numpy as np
>>> from crowdtune.valuation.games import AdditiveGame
>>> result = kernel_shapley(AdditiveGame(np.array([1.0, 2.0, 3.0]), constant=5.0), rng=0)
>>> bool(np.allclose(result.values, [1.0, 2.0, 3.0]))
True
>>> result.n_evaluations  # v(∅), v(N) and the 2^3 - 2 other coalitions
8
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from crowdtune.valuation.games import Game, check_finite_values
from crowdtune.valuation.result import ValuationResult

#: The published feature-selection setting; ``N`` becomes the number of players.
PUBLISHED_L1_REG = "num_features(N)"


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (which SHAP draws from) and restore its state on exit.

    Not thread-safe: another thread drawing from the global RNG meanwhile changes the result.
    """
    state = np.random.get_state()  # noqa: NPY002 - SHAP reads only the global RNG
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _import_shap() -> Any:
    try:
        with warnings.catch_warnings():
            # shap's plotting module warns about matplotlib colormap APIs on import.
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            import shap
    except ImportError as error:
        raise ImportError(
            'kernel_shapley needs the optional dependency shap: pip install "crowdtune[shap]"'
        ) from error
    return shap


def _check_background(background: np.ndarray | None, n: int) -> tuple[np.ndarray, str]:
    """The background as a float 0/1 ``(m, n)`` matrix and its label for the method string."""
    if background is None:
        return np.zeros((1, n)), "zeros"
    array = np.asarray(background)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n or array.shape[0] < 1:
        raise ValueError(
            f"background must have shape (m, {n}) for a game of {n} players; got shape "
            f"{np.asarray(background).shape}"
        )
    if not np.isin(array, (0, 1)).all():
        raise ValueError("background must hold coalition masks: every entry must be 0 or 1")
    return array.astype(float), f"custom({array.shape[0]} rows)"


def kernel_shapley(
    game: Game,
    *,
    nsamples: int = 10000,
    l1_reg: str | float | bool = PUBLISHED_L1_REG,
    background: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> ValuationResult:
    """Shapley values by SHAP's KernelExplainer, with the Crowd-SFT paper's settings.

    Parameters
    ----------
    game : Game
        Any game; every coalition the explainer samples goes through ``game.value``.
    nsamples : int, default 10000
        Coalitions KernelSHAP samples (published: 10000). SHAP caps it at ``2^n - 2``, in which
        case every coalition is enumerated and the values are exact.
    l1_reg : str, float or bool, default "num_features(N)"
        SHAP's feature selection before the regression; a literal ``N`` in a string is replaced by
        the number of players (published: ``"num_features(N)"``, i.e. no selection). ``False``
        turns selection off; ``"aic"``, ``"bic"`` or a Lasso ``alpha`` float select adaptively.
    background : ndarray of shape (m, n), optional
        0/1 rows that stand in for absent players; ``None`` is the published all-zeros row. With
        ``m`` rows the values add up to ``v(N)`` minus the mean value of the rows, and each sampled
        coalition costs ``m`` evaluations.
    rng : numpy.random.Generator or int, optional
        Seed of the sampling. SHAP draws from numpy's *global* RNG, so a seed drawn from ``rng`` is
        set there for the call and the global state is restored afterwards; the same seed gives
        the same values. Not thread-safe for other users of the global RNG.

    Returns
    -------
    ValuationResult
        ``stderr`` is NaN: KernelExplainer reports no uncertainty. ``n_evaluations`` counts the
        coalition rows passed to ``game.value`` (the background and the full coalition included).
        ``n_samples`` is 0, as no standard errors rest on the samples.

    Raises
    ------
    ImportError
        When shap is not installed, naming the extra to install.
    ValueError
        For a non-positive ``nsamples``, a bad ``background`` or a non-finite game value (naming
        the coalition).
    """
    shap = _import_shap()
    start = time.perf_counter()  # after the import, which takes seconds the first time
    n = int(game.n_players)
    if n < 1:
        raise ValueError(f"the game must have at least 1 player; got n_players={n}")
    if isinstance(nsamples, bool) or not isinstance(nsamples, int | np.integer) or nsamples < 1:
        raise ValueError(f"nsamples must be a positive integer; got {nsamples!r}")
    background_rows, background_label = _check_background(background, n)
    l1 = l1_reg.replace("N", str(n)) if isinstance(l1_reg, str) else l1_reg
    seed = int(np.random.default_rng(rng).integers(2**32, dtype=np.uint64))

    n_evaluations = 0

    def model(masks: np.ndarray) -> np.ndarray:
        nonlocal n_evaluations
        coalitions = np.asarray(masks).astype(bool)
        n_evaluations += len(coalitions)
        values = np.asarray(game.value(coalitions), dtype=float)
        return check_finite_values(values, coalitions)

    with _global_numpy_seed(seed):
        explainer = shap.KernelExplainer(model, background_rows)
        values = explainer.shap_values(
            np.ones((1, n)), nsamples=int(nsamples), l1_reg=l1, silent=True
        )
    return ValuationResult(
        values=np.asarray(values, dtype=float).reshape(n),
        stderr=np.full(n, np.nan),
        n_evaluations=n_evaluations,
        seconds=time.perf_counter() - start,
        method=f"kernel(nsamples={nsamples}, l1_reg={l1}, background={background_label})",
    )
