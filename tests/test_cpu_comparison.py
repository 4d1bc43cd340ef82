"""The CPU predictors, the tie-aware model and the default ensemble, cross-validated in one call."""

import numpy as np
import pandas as pd

from crowdtune.preference import DEFAULT_MODEL, make_model
from crowdtune.preference.cpu_comparison import (
    compare_cpu_predictors,
    cpu_comparison_fits,
    cpu_predictors,
)
from crowdtune.preference.cv import SCHEMES

#: The predictors that need no embeddings, in the order the tables list them.
CPU_PREDICTORS = ["length", "difference-bucket", "features-gbdt"]


def longer_wins(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Pairs where the longer answer wins and near-equal ones tie, from two datasets, ten pairs
    per prompt."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=(n, 2))
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "prompt": [f"question {i // 10}" for i in range(n)],
            "response_a": ["word " * a for a, _ in lengths],
            "response_b": ["word " * b for _, b in lengths],
            "label": np.where(
                abs(lengths[:, 0] - lengths[:, 1]) <= 2, 2, lengths[:, 1] > lengths[:, 0]
            ).astype("int64"),
            "source": np.where(np.arange(n) % 2 == 0, "first", "second"),
        }
    )


def test_cpu_predictors_and_the_default_ensemble():
    assert list(cpu_predictors()) == [*CPU_PREDICTORS, "tie-aware", "ensemble"]
    with_embeddings = cpu_predictors(embeddings=True, seed=3)
    assert list(with_embeddings) == [*CPU_PREDICTORS, "embedding-gbdt", "tie-aware", "ensemble"]
    ensemble = with_embeddings["ensemble"]
    assert ensemble.get_params(deep=False) == make_model(DEFAULT_MODEL, seed=3).get_params(
        deep=False
    )
    assert with_embeddings["features-gbdt"].random_state == 3
    assert ensemble.random_state == 3


def test_compare_cpu_predictors_counts_its_fits_and_pools_each_scheme():
    frame = longer_wins()
    folds: list[None] = []
    table, predictions = compare_cpu_predictors(frame, seed=0, on_fold=lambda: folds.append(None))
    assert len(folds) == cpu_comparison_fits(frame) == 5 * (5 + 2)
    pooled = table[table["held_out"] == "all"]
    models = [*CPU_PREDICTORS, "tie-aware", "ensemble"]
    assert sorted(zip(pooled["scheme"], pooled["model"], strict=True)) == sorted(
        (scheme, model) for scheme in SCHEMES for model in models
    )
    assert predictions[("grouped", "ensemble")].shape == (len(frame), 3)
    assert cpu_comparison_fits(frame, embeddings=True) == 6 * (5 + 2)
