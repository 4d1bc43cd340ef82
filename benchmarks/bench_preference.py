"""Benchmark: A/B/tie preference predictors against the competition's baselines.

Data: @pandalm (majority vote) + @llmeval2 + @mt-bench from the data home, 5,303 comparisons with
ties. Two schemes, every model scored out of fold on all 5,303 rows:

- grouped 5-fold cross-validation (folds grouped by prompt, so no prompt is in train and test);
- leave-one-dataset-out (train on two datasets, test on the third; rows pooled, and per dataset).

Anchors, measured in the same run: ``length`` (multinomial logistic regression on the responses'
lengths) and ``difference-bucket`` (the competition's shared reference: 250 quantile buckets of the
length difference; 1.0511 on the competition's own data). Uniform guessing scores ln 3 = 1.0986.
Target: the best CPU model beats ``length`` by >= 0.02 nats and beats ``difference-bucket``, in
both schemes. Differences are given with a paired 95% bootstrap interval over comparisons.
Throughput is pairs per second on this machine (train: fit time over training rows summed over
folds; predict likewise); the embedding model's figures assume cached embeddings, and the MiniLM
encoding rate of new texts is printed separately.
Last, calibration: features-gbdt raw, with temperature scaling, and with the competition's
threshold-multiplier post-processing, each fitted on out-of-fold predictions.
Run with ``make bench`` (the first run embeds ~16k texts, several minutes; they are cached).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import make_model
from crowdtune.preference.cv import cross_validate
from crowdtune.preference.metrics import UNIFORM_LOG_LOSS, row_log_loss
from crowdtune.records import comparisons_frame
from crowdtune.stats import bootstrap_mean_ci

SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")
MODELS = ("length", "difference-bucket", "features-gbdt", "embedding-gbdt", "ensemble")
ANCHORS = ("length", "difference-bucket")


def paired_gap(y: np.ndarray, anchor: np.ndarray, model: np.ndarray) -> tuple[float, float, float]:
    """Mean per-row log loss of ``anchor`` minus ``model`` (positive: model better), 95% CI."""
    gap = row_log_loss(y, anchor) - row_log_loss(y, model)
    low, high = bootstrap_mean_ci(gap)
    return float(gap.mean()), low, high


def encoding_rate(frame: pd.DataFrame, n: int = 200) -> float:
    """MiniLM texts per second on texts it has not seen (no cache)."""
    from crowdtune.spaces.text import TextEncoder

    encoder = TextEncoder(disk_cache=None)
    encoder.encode(["warm up"])
    texts = frame["response_a"].sample(n, random_state=0).tolist()
    start = time.perf_counter()
    encoder.encode(texts)
    return n / (time.perf_counter() - start)


def calibration_comparison(frame: pd.DataFrame, folds: int) -> None:
    """features-gbdt raw, temperature-scaled, and with the competition's threshold multiplier."""
    from crowdtune.preference import CALIBRATIONS, CalibratedPreferenceModel

    models = {
        f"features-gbdt + {method}": CalibratedPreferenceModel(
            estimator=make_model("features-gbdt"), method=method
        )
        for method in CALIBRATIONS
    }
    for scheme in ("grouped", "leave-one-dataset-out"):
        table, _ = cross_validate(models, frame, scheme=scheme, n_splits=folds)
        print(f"== calibration, {scheme}")
        for row in table[table.held_out == "all"].to_dict("records"):
            print(
                f"  {row['model']:<40} log loss {row['log_loss']:.4f} "
                f"[{row['log_loss_ci_low']:.4f}, {row['log_loss_ci_high']:.4f}]"
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    names = args.models.split(",")

    frame = comparisons_frame([c for src in SOURCES for c in load_comparisons(src)])
    y = frame["label"].to_numpy()
    print(f"{len(frame):,} comparisons from {', '.join(SOURCES)}; ties {np.mean(y == 2):.1%}")
    print(f"uniform guess: log loss {UNIFORM_LOG_LOSS:.4f}")
    from crowdtune.spaces.text import embed_texts

    start = time.perf_counter()
    embed_texts(pd.concat([frame.prompt, frame.response_a, frame.response_b]).tolist())
    print(f"embeddings ready in {time.perf_counter() - start:.1f} s (0 s when cached)")
    print(f"MiniLM encoding of new texts: {encoding_rate(frame):.0f} texts/s\n")

    for scheme in ("grouped", "leave-one-dataset-out"):
        start = time.perf_counter()
        table, preds = cross_validate(
            {n: make_model(n) for n in names}, frame, scheme=scheme, n_splits=args.folds
        )
        print(f"== {scheme} ({time.perf_counter() - start:.0f} s)")
        show = table if scheme != "grouped" else table[table.held_out == "all"]
        for row in show.to_dict("records"):
            print(
                f"  {row['model']:<18} {row['held_out']:<9} log loss {row['log_loss']:.4f} "
                f"[{row['log_loss_ci_low']:.4f}, {row['log_loss_ci_high']:.4f}]  "
                f"acc {row['accuracy']:.3f}  n {row['n']:>5}  "
                f"train {row['train_pairs_per_s']:>9,.0f} pairs/s  "
                f"predict {row['predict_pairs_per_s']:>9,.0f} pairs/s"
            )
        pooled = table[table.held_out == "all"].set_index("model")["log_loss"]
        best = min((n for n in names if n not in ANCHORS), key=lambda n: pooled[n], default=None)
        if best is None:
            continue
        for anchor in (a for a in ANCHORS if a in preds):
            gap, low, high = paired_gap(y, preds[anchor], preds[best])
            target = 0.02 if anchor == "length" else 0.0
            verdict = "met" if gap >= target else "NOT met"
            ratio = pooled[best] / pooled[anchor]
            print(
                f"  best ({best}) vs {anchor}: {pooled[anchor]:.4f} - {pooled[best]:.4f} = "
                f"{gap:+.4f} nats [{low:+.4f}, {high:+.4f}]; ratio {ratio:.3f}; "
                f"target >= {target:.2f}: {verdict}"
            )
        print()
    if not args.skip_calibration:
        calibration_comparison(frame, args.folds)


if __name__ == "__main__":
    main()
