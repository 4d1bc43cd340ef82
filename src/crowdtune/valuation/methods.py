"""One entry point over the estimators, by method name, for commands and experiments.

>>> import numpy as np
>>> from crowdtune.valuation.games import AdditiveGame
>>> estimate_shapley(AdditiveGame(np.array([1.0, 2.0])), "exact").values
array([1., 2.])
"""

from __future__ import annotations

import numpy as np

from crowdtune.parallel import Backend
from crowdtune.validation import check_choice
from crowdtune.valuation.estimators import exact_shapley, permutation_shapley, truncated_shapley
from crowdtune.valuation.games import Game
from crowdtune.valuation.kernel import kernel_shapley
from crowdtune.valuation.result import ValuationResult

METHODS = ("exact", "permutation", "truncated", "kernel")
#: Budget of a permutation estimate when none is given: 1% relative standard error, or a minute.
DEFAULT_RTOL = 0.01
DEFAULT_SECONDS = 60.0


def estimate_shapley(
    game: Game,
    method: str = "permutation",
    *,
    seed: np.random.Generator | int | None = None,
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seconds: float | None = None,
    rtol: float | None = None,
    backend: Backend | None = None,
) -> ValuationResult:
    """Shapley values of ``game`` by ``method`` (one of :data:`METHODS`).

    ``exact`` takes no budget. ``permutation`` and ``truncated`` stop at the first of
    ``n_permutations``, ``max_evaluations``, ``seconds`` and ``rtol``; with none given they stop at
    :data:`DEFAULT_RTOL` relative standard error or after :data:`DEFAULT_SECONDS`. ``kernel`` is
    SHAP's KernelExplainer with the published settings; ``max_evaluations`` sets its
    ``nsamples`` (default 10,000), as the published comparison did.
    """
    check_choice(method, METHODS, "Shapley method")
    if method == "exact":
        return exact_shapley(game)
    if method == "kernel":
        nsamples = 10_000 if max_evaluations is None else max_evaluations
        return kernel_shapley(game, nsamples=nsamples, rng=seed)
    if (n_permutations, max_evaluations, seconds, rtol) == (None, None, None, None):
        rtol, seconds = DEFAULT_RTOL, DEFAULT_SECONDS
    budgets = {
        "n_permutations": n_permutations,
        "max_evaluations": max_evaluations,
        "seconds": seconds,
        "rtol": rtol,
    }
    if method == "truncated":
        return truncated_shapley(game, rng=seed, backend=backend, **budgets)  # type: ignore[arg-type]
    return permutation_shapley(game, rng=seed, backend=backend, **budgets)  # type: ignore[arg-type]
