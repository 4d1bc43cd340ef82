"""Bradley–Terry leaderboards: an independent fit, known strengths, invariances, real MT-Bench."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.linear_model import LogisticRegression

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference.bradley_terry import ELO_SCALE, online_elo, synthetic_battles
from crowdtune.preference.leaderboard import bradley_terry
from crowdtune.records import comparisons_frame


def swap_sides(battles: pd.DataFrame) -> pd.DataFrame:
    swapped = battles.rename(
        columns={"model_a": "model_b", "model_b": "model_a", "response_a": "response_b",
                 "response_b": "response_a"}
    )  # fmt: skip
    swapped["label"] = np.array([1, 0, 2])[battles["label"].to_numpy()]
    return swapped


def fastchat_mle(battles: pd.DataFrame) -> pd.Series:
    """FastChat's ``compute_mle_elo``: each battle twice, a tie once as an A win, once a loss."""
    models = pd.Index(sorted(set(battles.model_a) | set(battles.model_b)))
    doubled = pd.concat([battles, battles], ignore_index=True)
    n = len(doubled)
    X = np.zeros((n, len(models)))
    X[np.arange(n), models.get_indexer(doubled.model_a)] = math.log(10)
    X[np.arange(n), models.get_indexer(doubled.model_b)] = -math.log(10)
    y = (doubled.label.to_numpy() == 0).astype(float)
    y[: len(battles)][battles.label.to_numpy() == 2] = 1.0
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(X, y)
    return pd.Series(400 * fit.coef_[0] + 1000, index=models)


def test_half_ties_match_sklearn_logistic_regression_on_fastchat_design():
    battles = synthetic_battles(n_models=8, n_battles=3000, seed=4, tie_rate=0.25).battles
    ours = bradley_terry(battles, n_bootstrap=0).ratings
    reference = fastchat_mle(battles)
    assert np.max(np.abs(ours - reference[ours.index])) < 0.01


def test_recovers_known_strengths_inside_the_intervals():
    data = synthetic_battles(n_models=20, n_battles=20_000, seed=1)
    board = bradley_terry(data.battles, n_bootstrap=300, seed=2)
    table = board.table.set_index("model")
    truth = 1000 + ELO_SCALE * data.strengths[table.index]
    assert scipy.stats.spearmanr(truth, table.rating).statistic > 0.95
    covered = (table.ci_low <= truth) & (truth <= table.ci_high)
    assert covered.mean() >= 0.8  # nominal 0.95


def test_davidson_recovers_the_tie_parameter():
    data = synthetic_battles(n_models=10, n_battles=20_000, seed=5, tie_rate=0.3)
    board = bradley_terry(data.battles, ties="davidson", n_bootstrap=300)
    nu = board.parameters.set_index("parameter").loc["nu"]
    assert nu.ci_low <= data.tie_parameter <= nu.ci_high
    assert board.tie_parameter == pytest.approx(data.tie_parameter, rel=0.1)
    table = board.table.set_index("model")
    truth = 1000 + ELO_SCALE * data.strengths[table.index]
    assert np.max(np.abs(table.rating - truth)) < 30


def test_intervals_contain_the_estimate_and_ranks_follow_them():
    battles = synthetic_battles(n_models=12, n_battles=4000, seed=3, tie_rate=0.1).battles
    for ties in ("half", "davidson"):
        table = bradley_terry(battles, ties=ties, n_bootstrap=200).table
        assert ((table.ci_low <= table.rating) & (table.rating <= table.ci_high)).all()
        assert np.all(np.diff(table.rating) <= 0)
        above = table.ci_low.to_numpy()[None, :] > table.ci_high.to_numpy()[:, None]
        assert (table["rank"].to_numpy() == 1 + above.sum(axis=1)).all()
        assert table.n_battles.sum() == 2 * len(battles)
        assert (table.wins + table.losses + table.ties == table.n_battles).all()


def test_bootstrap_is_reproducible_by_seed():
    battles = synthetic_battles(n_models=5, n_battles=1000, seed=0).battles
    first = bradley_terry(battles, n_bootstrap=50, seed=9).table
    second = bradley_terry(battles, n_bootstrap=50, seed=9).table
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_swapping_a_and_b_of_every_battle_leaves_ratings_unchanged(ties):
    data = synthetic_battles(n_models=6, n_battles=3000, seed=8, tie_rate=0.2, length_effect=1.0)
    for style in (False, True):
        plain = bradley_terry(data.battles, ties=ties, style_control=style, n_bootstrap=0)
        swapped = bradley_terry(swap_sides(data.battles), ties=ties, style_control=style,
                                n_bootstrap=0)  # fmt: skip
        assert np.max(np.abs(plain.ratings - swapped.ratings[plain.ratings.index])) < 1e-6
        np.testing.assert_allclose(plain.parameters.estimate, swapped.parameters.estimate,
                                   atol=1e-8)  # fmt: skip


def test_style_control_removes_a_pure_length_effect():
    # Every model is equally strong; longer answers win more often.
    data = synthetic_battles(n_models=8, n_battles=20_000, seed=3, tie_rate=0.1, spread=0.0,
                             length_effect=2.0)  # fmt: skip
    plain = bradley_terry(data.battles, n_bootstrap=0)
    controlled = bradley_terry(data.battles, style_control=["length"], n_bootstrap=200)
    assert plain.ratings.max() - plain.ratings.min() > 100
    assert controlled.ratings.max() - controlled.ratings.min() < 25
    assert (controlled.table["rank"] == 1).all()
    length = controlled.style_coefficients.set_index("feature").loc["length"]
    assert 0 < length.ci_low < length.estimate < length.ci_high


def test_anchor_pins_a_model_to_the_base():
    battles = synthetic_battles(n_models=5, n_battles=2000, seed=2).battles
    board = bradley_terry(battles, anchor="model-003", base=1100, n_bootstrap=50)
    row = board.table.set_index("model").loc["model-003"]
    assert row.rating == pytest.approx(1100) and row.ci_low == pytest.approx(1100)
    free = bradley_terry(battles, n_bootstrap=0).ratings
    np.testing.assert_allclose(np.diff(board.ratings), np.diff(free[board.ratings.index]))


def test_to_dict_is_json():
    board = bradley_terry(synthetic_battles(4, 500, seed=0, tie_rate=0.2).battles,
                          ties="davidson", n_bootstrap=20)  # fmt: skip
    summary = json.loads(json.dumps(board.to_dict()))
    assert summary["method"] == "bradley-terry(ties=davidson)"
    assert [p["parameter"] for p in summary["parameters"]] == ["nu"]
    assert len(summary["models"]) == 4


def test_online_elo_by_hand():
    battles = pd.DataFrame({"model_a": ["x", "x"], "model_b": ["y", "y"], "label": [0, 2]})
    ratings = online_elo(battles, k=4)
    # First battle: expected 0.5, x +2, y -2. Second: a tie, x expected 1 / (1 + 10^(-4/400)).
    expected_x = 1 / (1 + 10 ** (-4 / 400))
    assert ratings["x"] == pytest.approx(1002 + 4 * (0.5 - expected_x))
    assert ratings["x"] + ratings["y"] == pytest.approx(2000)
    reversed_order = online_elo(battles.iloc[::-1], k=4)
    assert reversed_order["x"] != pytest.approx(ratings["x"])  # Elo depends on the order


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"model_a": ["x"], "model_b": ["x"], "label": [0]}), {}, "against itself"),
        (pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "label": [3]}), {}, "label must be"),
        (pd.DataFrame({"model_a": ["x"], "model_b": ["y"]}), {}, "lack column"),
        (pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "label": [0]}), {"ties": "x"},
         "unknown tie model"),
        (pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "label": [0]}), {"ties": "davidson"},
         "at least one tie"),
        (pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "label": [0]}), {"anchor": "z"},
         "anchor 'z'"),
    ],
)  # fmt: skip
def test_bad_input_is_named(frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry(frame, n_bootstrap=0, **kwargs)


def test_mt_bench_human_votes_rank_gpt4_first_and_llama_last():
    battles = comparisons_frame(load_comparisons("@mt-bench"))
    board = bradley_terry(battles, n_bootstrap=500)
    table = board.table
    assert len(table) == 6
    assert table.model.iloc[0] == "gpt-4" and table.model.iloc[-1] == "llama-13b"
    assert table["rank"].iloc[0] == 1
    assert table["rank"].iloc[-1] == 6  # llama-13b's interval lies below everyone else's
    davidson = bradley_terry(battles, ties="davidson", n_bootstrap=0).table
    assert list(davidson.model) == list(table.model)


def test_models_that_never_met_are_flagged():
    battles = pd.DataFrame({"model_a": ["x", "p"], "model_b": ["y", "q"], "label": [0, 2]})
    with pytest.warns(UserWarning, match="2 groups of models"):
        bradley_terry(battles, n_bootstrap=0)
