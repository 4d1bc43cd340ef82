"""Cross-validation of predictors: folds grouped by prompt, and leave-one-dataset-out.

Generalisation to data a model never saw matters more than in-distribution scores, so besides
grouped k-fold (no prompt in both train and test) every model is also trained on all datasets but
one and tested on the one left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from crowdtune.preference.calibration import prompt_groups
from crowdtune.preference.metrics import evaluate_proba
from crowdtune.validation import check_choice


def dataset_of(frame: pd.DataFrame) -> pd.Series:
    """The dataset a row comes from: its ``source`` up to the first ``:`` (``llmeval2:webgpt``
    belongs to ``llmeval2``)."""
    return frame["source"].fillna("unknown").astype(str).str.split(":").str[0]


def grouped_folds(
    frame: pd.DataFrame, n_splits: int = 5, seed: int = 0
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(fold name, train rows, test rows)`` of grouped k-fold, grouped by prompt."""
    groups = prompt_groups(frame)
    folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(folds.split(frame, groups=groups)):
        yield f"fold{k}", train, test


def dataset_folds(frame: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(held-out dataset, train rows, test rows)`` for every dataset in the frame."""
    datasets = dataset_of(frame).to_numpy()
    names = list(dict.fromkeys(datasets))
    if len(names) < 2:
        raise ValueError(f"leave-one-dataset-out needs at least 2 datasets, got {names}")
    for name in names:
        test = np.flatnonzero(datasets == name)
        yield name, np.flatnonzero(datasets != name), test


def _run_folds(
    model: Any,
    frame: pd.DataFrame,
    folds: Iterator[tuple[str, np.ndarray, np.ndarray]],
    on_fold: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Out-of-fold probabilities, the fold name per row, and timing totals."""
    y = frame["label"].to_numpy()
    proba = np.full((len(frame), 3), np.nan)
    fold_of = np.empty(len(frame), dtype=object)
    timing = {"fit_seconds": 0.0, "fit_pairs": 0.0, "predict_seconds": 0.0, "predict_pairs": 0.0}
    for name, train, test in folds:
        start = time.perf_counter()
        fitted = clone(model).fit(frame.iloc[train], y[train])
        middle = time.perf_counter()
        proba[test] = fitted.predict_proba(frame.iloc[test])
        timing["fit_seconds"] += middle - start
        timing["predict_seconds"] += time.perf_counter() - middle
        timing["fit_pairs"] += len(train)
        timing["predict_pairs"] += len(test)
        fold_of[test] = name
        on_fold()
    return proba, fold_of, timing


def cross_validate(
    models: Mapping[str, Any],
    frame: pd.DataFrame,
    scheme: str = "grouped",
    n_splits: int = 5,
    seed: int = 0,
    on_fold: Callable[[], None] = lambda: None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Score every model out of fold.

    Parameters
    ----------
    models
        ``{name: unfitted predictor}``.
    frame
        A comparisons frame (:func:`crowdtune.records.comparisons_frame`).
    scheme
        ``"grouped"`` (k-fold grouped by prompt) or ``"leave-one-dataset-out"``.
    on_fold
        Called after every fold (progress bars).

    Returns
    -------
    (table, predictions)
        ``table``: one row per model (and, for leave-one-dataset-out, one per model and held-out
        dataset, ``held_out`` naming it; ``"all"`` pools every held-out row) with ``log_loss``,
        ``log_loss_ci_low``/``_high`` (95% bootstrap over rows), ``accuracy``, ``n``, and train and
        predict throughput in pairs per second. ``predictions``: out-of-fold probabilities per
        model, aligned with ``frame``.
    """
    y = frame["label"].to_numpy()
    rows, predictions = [], {}
    for name, model in models.items():
        folds = (
            grouped_folds(frame, n_splits, seed) if scheme == "grouped" else dataset_folds(frame)
        )
        proba, fold_of, timing = _run_folds(model, frame, folds, on_fold)
        predictions[name] = proba
        parts = [("all", np.ones(len(frame), dtype=bool))]
        if scheme != "grouped":
            parts += [(str(held), fold_of == held) for held in dict.fromkeys(fold_of)]
        for held, mask in parts:
            scores = evaluate_proba(y[mask], proba[mask], seed=seed)
            rows.append(
                {
                    "model": name,
                    "scheme": scheme,
                    "held_out": held,
                    "log_loss": scores["log_loss"],
                    "log_loss_ci_low": scores["log_loss_ci"][0],
                    "log_loss_ci_high": scores["log_loss_ci"][1],
                    "accuracy": scores["accuracy"],
                    "n": scores["n"],
                    "train_pairs_per_s": timing["fit_pairs"] / max(timing["fit_seconds"], 1e-9),
                    "predict_pairs_per_s": timing["predict_pairs"]
                    / max(timing["predict_seconds"], 1e-9),
                }
            )
    return pd.DataFrame(rows), predictions


def n_folds(frame: pd.DataFrame, scheme: str, n_splits: int = 5) -> int:
    """How many folds :func:`cross_validate` runs per model (for progress bars)."""
    return n_splits if scheme == "grouped" else int(dataset_of(frame).nunique())


#: Cross-validation schemes.
SCHEMES = ("grouped", "leave-one-dataset-out")


def compare_models(
    models: Mapping[str, Any],
    frame: pd.DataFrame,
    schemes: Sequence[str] = SCHEMES,
    n_splits: int = 5,
    seed: int = 0,
    on_fold: Callable[[], None] = lambda: None,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """:func:`cross_validate` under each scheme: one table; predictions by ``(scheme, model)``."""
    tables, predictions = [], {}
    for scheme in schemes:
        check_choice(scheme, SCHEMES, "cross-validation scheme")
        table, preds = cross_validate(models, frame, scheme, n_splits, seed, on_fold)
        tables.append(table)
        predictions.update({(scheme, name): proba for name, proba in preds.items()})
    return pd.concat(tables, ignore_index=True), predictions
