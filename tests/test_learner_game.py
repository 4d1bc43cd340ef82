"""LearnerGame: the Learner protocol as a cooperative game, with a point and an sklearn learner."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from crowdtune.valuation import (
    CentroidGame,
    Game,
    LearnerGame,
    check_efficiency,
    exact_shapley,
    permutation_shapley,
)
from crowdtune.valuation.games import default_collate
from crowdtune.valuation.learners import PointLearner, SklearnLearner


def mean_of_rows(items: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(items).mean(axis=0)


def point_game(n: int, seed: int = 0) -> tuple[LearnerGame, CentroidGame]:
    rng = np.random.default_rng(seed)
    users = rng.dirichlet(np.full(6, 0.5), size=n)
    expert = rng.dirichlet(np.full(6, 0.5))
    # delta=1 moves the base all the way to the coalition's mean, and base=zeros makes
    # learner.score(base) = l2(0, expert), CentroidGame's published v(∅).
    learner = PointLearner(expert, metric="l2", delta=1.0)
    game = LearnerGame(learner, list(users[:, None, :]), base=np.zeros(6), collate=mean_of_rows)
    return game, CentroidGame(users, expert)


def classification_players(
    n_players: int = 6, per_player: int = 40, flipped: int = 2
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=n_players * per_player + 400,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        class_sep=1.5,
        random_state=0,
    )
    chunks = [
        (X[i * per_player : (i + 1) * per_player], y[i * per_player : (i + 1) * per_player])
        for i in range(n_players)
    ]
    X_flip, y_flip = chunks[flipped]
    chunks[flipped] = (X_flip, 1 - y_flip)
    start = n_players * per_player
    return chunks, X[start:], y[start:]


def test_point_learner_game_equals_centroid_game() -> None:
    game, centroid = point_game(9)
    assert isinstance(game, Game) and game.n_players == 9
    coalitions = np.random.default_rng(1).random((40, 9)) < 0.5
    coalitions[0] = False  # the empty coalition
    coalitions[1] = True
    np.testing.assert_allclose(game.value(coalitions), centroid.value(coalitions), rtol=1e-12)
    assert game.value(coalitions[:1])[0] == centroid.empty_value
    np.testing.assert_allclose(
        exact_shapley(game).values, exact_shapley(centroid).values, rtol=1e-10, atol=1e-14
    )


def test_empty_value_overrides_base() -> None:
    game, _ = point_game(3)
    shifted = LearnerGame(
        game.learner, game.feedback, base=np.zeros(6), collate=mean_of_rows, empty_value=-5.0
    )
    assert shifted.value(np.zeros((1, 3), dtype=bool))[0] == -5.0
    only_empty = LearnerGame(game.learner, game.feedback, collate=mean_of_rows, empty_value=0.0)
    assert only_empty.value(np.zeros((1, 3), dtype=bool))[0] == 0.0


def test_sklearn_game_gives_the_flipped_player_the_lowest_value() -> None:
    chunks, X_test, y_test = classification_players(flipped=2)
    learner = SklearnLearner(LogisticRegression(), X_test, y_test)
    game = LearnerGame(learner, chunks, empty_value=0.5)  # chance accuracy of two classes
    result = exact_shapley(game)
    assert int(np.argmin(result.values)) == 2
    assert result.values[2] < 0 < np.min(np.delete(result.values, 2))
    check_efficiency(result, game, rtol=1e-12)
    assert game.n_fits == 2**6 - 1  # every non-empty coalition once


def test_cache_counts_fits() -> None:
    chunks, X_test, y_test = classification_players(n_players=4)
    learner = SklearnLearner(LogisticRegression(), X_test, y_test)
    cached = LearnerGame(learner, chunks, empty_value=0.5)
    permutation_shapley(cached, n_permutations=20, rng=0)
    assert cached.n_fits <= 2**4 - 1  # prefixes repeat across permutations
    before = cached.n_fits
    cached.value(np.ones((3, 4), dtype=bool))
    assert cached.n_fits == before  # the full coalition was a prefix already
    uncached = LearnerGame(learner, chunks, empty_value=0.5, cache=False)
    coalitions = np.array([[True, False, False, False]] * 3 + [[False] * 4])
    values = uncached.value(coalitions)
    assert uncached.n_fits == 3 and len(set(values[:3].tolist())) == 1


def test_single_class_coalition_predicts_that_class() -> None:
    X_test = np.array([[0.0], [1.0], [2.0], [3.0]])
    y_test = np.array([0, 0, 0, 1])
    learner = SklearnLearner(LogisticRegression(), X_test, y_test)
    chunks = [(np.array([[0.0], [0.5]]), np.array([0, 0])), (np.array([[3.0]]), np.array([1]))]
    game = LearnerGame(learner, chunks, empty_value=0.0)
    values = game.value(np.array([[True, False], [False, True], [True, True]]))
    np.testing.assert_allclose(values, [0.75, 0.25, 1.0])


class FailingLearner:
    """Fits fail whenever player 3's feedback (the string "bad") is in the training data."""

    def fit(self, base: Any, feedback: list[Any]) -> float:
        if "bad" in feedback:
            raise RuntimeError("cannot train on 'bad'")
        return float(len(feedback))

    def score(self, candidate: float) -> float:
        return candidate


def test_learner_error_names_the_coalition() -> None:
    game = LearnerGame(FailingLearner(), [["a"], ["b"], ["c"], ["bad"]], empty_value=0.0)
    np.testing.assert_array_equal(game.value(np.array([[True, True, False, False]])), [2.0])
    with pytest.raises(ValueError, match=r"players \[1, 3\]: RuntimeError: cannot train") as info:
        game.value(np.array([[False, True, False, True]]))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_construction_and_collate_errors() -> None:
    with pytest.raises(ValueError, match="needs empty_value or base"):
        LearnerGame(FailingLearner(), [["a"]])
    with pytest.raises(ValueError, match="one item per player"):
        LearnerGame(FailingLearner(), [], empty_value=0.0)
    with pytest.raises(ValueError, match="empty_value must be finite"):
        LearnerGame(FailingLearner(), [["a"]], empty_value=float("nan"))
    game = LearnerGame(FailingLearner(), [{"a": 1}, {"b": 2}], empty_value=0.0)
    with pytest.raises(ValueError, match=r"players \[0, 1\]: TypeError: .*pass collate="):
        game.value(np.array([[True, True]]))
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        game.value(np.ones((1, 3), dtype=bool))


def test_non_finite_score_names_the_coalition() -> None:
    class NaNLearner(FailingLearner):
        def score(self, candidate: float) -> float:
            return float("nan") if candidate == 2 else candidate

    game = LearnerGame(NaNLearner(), [["a"], ["b"], ["c"]], empty_value=0.0)
    with pytest.raises(ValueError, match=r"coalition of players \[0, 2\]"):
        game.value(np.array([[True, False, False], [True, False, True]]))


def test_default_collate() -> None:
    assert default_collate([np.ones((2, 3)), np.zeros((1, 3))]).shape == (3, 3)
    X, y = default_collate([(np.ones((2, 3)), np.ones(2)), (np.zeros((1, 3)), np.zeros(1))])
    assert X.shape == (3, 3) and y.tolist() == [1.0, 1.0, 0.0]
    assert default_collate([["a"], ["b", "c"]]) == ["a", "b", "c"]


def test_sklearn_learner_checks() -> None:
    with pytest.raises(ValueError, match="not_a_scorer"):
        SklearnLearner(LogisticRegression(), np.ones((2, 1)), np.ones(2), scoring="not_a_scorer")
    learner = SklearnLearner(LogisticRegression(), np.ones((2, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"feedback must be a pair \(X, y\); got ndarray"):
        learner.fit(None, np.ones((2, 1)))
