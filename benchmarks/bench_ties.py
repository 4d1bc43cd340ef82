"""Benchmark: ties as their own signal (issue #21 item 3).

Data: @pandalm + @llmeval2 + @mt-bench, as in bench_preference.py. Each model is scored out of fold
(grouped 5-fold by prompt, and leave-one-dataset-out) on P(tie) alone: binary tie-vs-not log loss
and Brier score with 95% bootstrap CIs, plus the paired difference per row to ``length`` and to the
model's own baseline (:data:`BASELINES`: the variant with embedding similarity against the one
without). The three-class log loss is printed too, with the same paired difference, so a better
tie score bought with a worse A/B split shows.

Variants (:data:`VARIANTS`): ``tie-aware+embedding`` is ``tie-aware`` with the MiniLM similarity
of the two answers (``embedding_similarity=True``); ``ensemble+embedding`` is the default ensemble
with that as its tie-aware member. ``--cost N`` times MiniLM on the texts of N pairs without any
cache (prompt and both responses), the price of turning the option on for new data.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import EnsembleModel, TieAwareModel, make_model, tie_scores
from crowdtune.preference.cv import compare_models
from crowdtune.preference.ensemble import default_members
from crowdtune.preference.metrics import EPS, row_log_loss
from crowdtune.records import comparisons_frame
from crowdtune.spaces.text import TextEncoder
from crowdtune.stats import bootstrap_mean_ci

SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")


def _ensemble_with_embedding() -> EnsembleModel:
    members = [
        (name, TieAwareModel(embedding_similarity=True) if name == "tie-aware" else model)
        for name, model in default_members()
    ]
    return EnsembleModel(members=members)


#: Models that are not ``--model`` names of the registry, by their name in this benchmark.
VARIANTS: dict[str, Callable[[], Any]] = {
    "tie-aware+embedding": lambda: TieAwareModel(embedding_similarity=True),
    "ensemble+embedding": _ensemble_with_embedding,
}
#: The model each variant is compared with, row by row.
BASELINES = {"tie-aware+embedding": "tie-aware", "ensemble+embedding": "ensemble"}
MODELS = ("length", "features-gbdt", "tie-aware", "tie-aware+embedding")


def tie_row_loss(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Binary tie-vs-not log loss per row."""
    p = np.clip(proba[:, 2], EPS, 1 - EPS)
    tie = y == 2
    return -np.where(tie, np.log(p), np.log1p(-p))


def tie_row_brier(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Squared error of P(tie) per row."""
    return (proba[:, 2] - (y == 2)) ** 2


def paired(
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    y: np.ndarray,
    anchor: np.ndarray,
    model: np.ndarray,
) -> str:
    """Mean per-row ``score`` of ``anchor`` minus ``model`` (positive: model better), 95% CI."""
    gap = score(y, anchor) - score(y, model)
    low, high = bootstrap_mean_ci(gap)
    return f"{gap.mean():+.4f} [{low:+.4f}, {high:+.4f}]"


def encoding_cost(frame: Any, n_pairs: int) -> None:
    """Print MiniLM's uncached seconds per 1,000 pairs (three texts a pair) on this machine."""
    encoder = TextEncoder("minilm", disk_cache=None)
    start = time.perf_counter()
    encoder.encode(["warm up"])  # loads the model: a one-off, timed apart
    loaded = time.perf_counter()
    rows = frame.sample(n=min(n_pairs, len(frame)), random_state=0)
    texts = [t for c in ("prompt", "response_a", "response_b") for t in rows[c].astype(str)]
    encoder.encode(texts, progress=False)
    seconds = time.perf_counter() - loaded
    print(
        f"MiniLM uncached: {len(rows)} pairs ({len(set(texts))} distinct texts) in {seconds:.1f} s "
        f"= {1000 * seconds / len(rows):.0f} s per 1k pairs (model load {loaded - start:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cost", type=int, default=0, help="time MiniLM on N pairs uncached")
    args = parser.parse_args()
    names = args.models.split(",")
    frame = comparisons_frame([c for src in SOURCES for c in load_comparisons(src)])
    y = frame["label"].to_numpy()
    print(f"{len(frame):,} comparisons; ties {np.mean(y == 2):.1%}")
    if args.cost:
        encoding_cost(frame, args.cost)
    models = {n: VARIANTS[n]() if n in VARIANTS else make_model(n) for n in names}
    table, preds = compare_models(models, frame, n_splits=args.folds)
    datasets = frame["source"].astype(str).str.split(":").str[0].to_numpy()
    for scheme in dict.fromkeys(table["scheme"]):
        print(f"== {scheme}")
        for row in table[table.scheme == scheme].to_dict("records"):
            held, name = row["held_out"], row["model"]
            mask = np.ones(len(y), bool) if held == "all" else datasets == held
            ym, proba = y[mask], preds[(scheme, name)][mask]
            scores = tie_scores(ym, proba)
            line = (
                f"  {name:<20} {held:<9} tie LL {scores['tie_log_loss']:.4f} "
                f"[{scores['tie_log_loss_ci'][0]:.4f}, {scores['tie_log_loss_ci'][1]:.4f}]  "
                f"Brier {scores['tie_brier']:.4f} "
                f"[{scores['tie_brier_ci'][0]:.4f}, {scores['tie_brier_ci'][1]:.4f}]  "
                f"tie share {scores['tie_share']:.3f} mean P(tie) {scores['mean_p_tie']:.3f}  "
                f"3-class {row['log_loss']:.4f}"
            )
            for anchor in ("length", BASELINES.get(name)):
                if anchor in names and anchor != name:
                    other = preds[(scheme, anchor)][mask]
                    line += (
                        f"\n      vs {anchor}: tie LL {paired(tie_row_loss, ym, other, proba)}"
                        f"  Brier {paired(tie_row_brier, ym, other, proba)}"
                        f"  3-class {paired(row_log_loss, ym, other, proba)}"
                    )
            print(line)


if __name__ == "__main__":
    main()
