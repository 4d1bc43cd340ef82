"""Benchmark: ties as their own signal (issue #21 item 3).

Data: @pandalm + @llmeval2 + @mt-bench, as in bench_preference.py. Each model is scored out of fold
(grouped 5-fold by prompt, and leave-one-dataset-out) on P(tie) alone: binary tie-vs-not log loss
and Brier score with 95% bootstrap CIs, plus the paired difference to ``length`` per row. The
three-class log loss is printed too, so a better tie score bought with a worse A/B split shows.
"""

from __future__ import annotations

import argparse

import numpy as np

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import make_model, tie_scores
from crowdtune.preference.cv import compare_models
from crowdtune.preference.metrics import EPS
from crowdtune.records import comparisons_frame
from crowdtune.stats import bootstrap_mean_ci

SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")
MODELS = ("length", "features-gbdt", "tie-aware")


def tie_row_loss(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Binary tie-vs-not log loss per row."""
    p = np.clip(proba[:, 2], EPS, 1 - EPS)
    tie = y == 2
    return -np.where(tie, np.log(p), np.log1p(-p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    names = args.models.split(",")
    frame = comparisons_frame([c for src in SOURCES for c in load_comparisons(src)])
    y = frame["label"].to_numpy()
    print(f"{len(frame):,} comparisons; ties {np.mean(y == 2):.1%}")
    table, preds = compare_models({n: make_model(n) for n in names}, frame, n_splits=args.folds)
    for scheme in dict.fromkeys(table["scheme"]):
        print(f"== {scheme}")
        fold_rows = table[table.scheme == scheme]
        for row in fold_rows.to_dict("records"):
            held = row["held_out"]
            mask = np.ones(len(y), bool)
            if held != "all":
                mask = frame["source"].astype(str).str.split(":").str[0].to_numpy() == held
            scores = tie_scores(y[mask], preds[(scheme, row["model"])][mask])
            line = (
                f"  {row['model']:<14} {held:<9} tie log loss {scores['tie_log_loss']:.4f} "
                f"[{scores['tie_log_loss_ci'][0]:.4f}, {scores['tie_log_loss_ci'][1]:.4f}]  "
                f"Brier {scores['tie_brier']:.4f} "
                f"[{scores['tie_brier_ci'][0]:.4f}, {scores['tie_brier_ci'][1]:.4f}]  "
                f"tie share {scores['tie_share']:.3f} mean P(tie) {scores['mean_p_tie']:.3f}  "
                f"3-class {row['log_loss']:.4f}"
            )
            if row["model"] != "length" and "length" in names:
                gap = tie_row_loss(y[mask], preds[(scheme, "length")][mask]) - tie_row_loss(
                    y[mask], preds[(scheme, row["model"])][mask]
                )
                low, high = bootstrap_mean_ci(gap)
                line += f"  vs length {gap.mean():+.4f} [{low:+.4f}, {high:+.4f}]"
            print(line)


if __name__ == "__main__":
    main()
