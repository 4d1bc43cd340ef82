"""Cooperative games and Shapley value estimators for crediting contributors.

A :class:`Game` values coalitions of players; an estimator turns it into a
:class:`ValuationResult` with values, standard errors, evaluations and the method. A
:class:`LearnerGame` values a coalition by what a :class:`Learner` trains on its feedback, the
protocol Crowd-SFT rounds (:mod:`crowdtune.crowd`) train and score their candidates with.

>>> import numpy as np
>>> from crowdtune.valuation import CentroidGame, exact_shapley, permutation_shapley
>>> rng = np.random.default_rng(0)
>>> game = CentroidGame(rng.random((6, 3)), rng.random(3))
>>> exact = exact_shapley(game)
>>> estimate = permutation_shapley(game, n_permutations=2000, rng=1)
>>> bool(np.all(np.abs(estimate.values - exact.values) <= 4 * estimate.stderr + 1e-9))
True
"""

from crowdtune.valuation.estimators import (
    check_efficiency,
    exact_shapley,
    permutation_shapley,
    total_value,
)
from crowdtune.valuation.games import (
    AdditiveGame,
    CentroidGame,
    Game,
    LearnerGame,
    SymmetricVotingGame,
    UnanimityGame,
)
from crowdtune.valuation.kernel import kernel_shapley
from crowdtune.valuation.learners import Learner, PointLearner, SklearnLearner
from crowdtune.valuation.result import ValuationResult

__all__ = [
    "AdditiveGame",
    "CentroidGame",
    "Game",
    "Learner",
    "LearnerGame",
    "PointLearner",
    "SklearnLearner",
    "SymmetricVotingGame",
    "UnanimityGame",
    "ValuationResult",
    "check_efficiency",
    "exact_shapley",
    "kernel_shapley",
    "permutation_shapley",
    "total_value",
]
