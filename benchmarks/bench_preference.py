"""Benchmark: A/B/tie preference predictors in and out of distribution (issues #4 and #21).

Data: @pandalm (majority vote) + @llmeval2 + @mt-bench from the data home, 5,303 comparisons with
ties. Two schemes, every model scored out of fold on all 5,303 rows:

- grouped 5-fold cross-validation (folds grouped by prompt, so no prompt is in train and test);
- leave-one-dataset-out (LODO: train on two datasets, test on the third; pooled and per dataset).

For every model (``--models``): the three-class log loss with a 95% bootstrap CI, the same
predictions after prior-shift adaptation (:class:`~crowdtune.preference.priors.PriorAdapted`'s
``adapt``, the target's tie share estimated from the unlabelled test rows of each fold) and, for
each held-out dataset, after the oracle shift (its true class shares plugged into
:func:`~crowdtune.preference.priors.adjust_priors`), with the verdict "adaptation closes >= half
the gap to the oracle"; and the tie metrics (:func:`~crowdtune.preference.metrics.tie_scores`:
P(tie) alone, tie log loss and Brier score).

Anchors, measured in the same run: ``length`` (multinomial logistic regression on the responses'
lengths) and ``difference-bucket`` (the competition's reference: 250 quantile buckets of the
length difference). Uniform guessing scores ln 3 = 1.0986. Targets (issue #21), printed with
paired 95% bootstrap intervals over comparisons: the default model beats ``length`` by >= 0.02
nats pooled LODO, and is never worse than its best member on a held-out dataset. Then Dawid–Skene
against majority vote (``bench_reliability.py``'s own functions) and, unless
``--skip-calibration``, the calibrators of features-gbdt. Run with ``make bench`` (the first run
embeds ~16k texts, minutes on 2 cores; they are cached).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

import bench_reliability  # beside this file: python benchmarks/bench_preference.py
from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import PriorAdapted, adjust_priors, make_model, tie_scores
from crowdtune.preference.cv import cross_validate, dataset_folds, dataset_of, grouped_folds
from crowdtune.preference.ensemble import DEFAULT_MEMBERS
from crowdtune.preference.metrics import UNIFORM_LOG_LOSS, row_log_loss
from crowdtune.preference.priors import symmetric_shares
from crowdtune.records import comparisons_frame
from crowdtune.stats import bootstrap_mean_ci

SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")
DEFAULT = "ensemble"
MODELS = ("length", "difference-bucket", "features-gbdt", "embedding-gbdt", "tie-aware", DEFAULT)
ANCHORS = ("length", "difference-bucket")
SCHEMES = ("grouped", "leave-one-dataset-out")


def paired_gap(y: np.ndarray, anchor: np.ndarray, model: np.ndarray) -> tuple[float, float, float]:
    """Mean per-row log loss of ``anchor`` minus ``model`` (positive: model better), 95% CI."""
    gap = row_log_loss(y, anchor) - row_log_loss(y, model)
    low, high = bootstrap_mean_ci(gap)
    return float(gap.mean()), low, high


def folds(frame: pd.DataFrame, scheme: str, n_splits: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(fold, test rows)`` of :func:`~crowdtune.preference.cv.cross_validate`'s folds."""
    if scheme == "grouped":
        for name, _, test in grouped_folds(frame, n_splits):
            yield name, test
    else:
        for name, _, test in dataset_folds(frame):
            yield name, test


def adapted(y: np.ndarray, proba: np.ndarray, fold_rows: list[np.ndarray]) -> np.ndarray:
    """Out-of-fold ``proba`` after prior adaptation per fold, as ``PriorAdapted`` would give them:
    trained under the shares of the other folds' labels, adapted to the fold's own rows."""
    out = np.empty_like(proba)
    for test in fold_rows:
        train = np.setdiff1d(np.arange(len(y)), test)
        wrapper = PriorAdapted.from_fitted(None, symmetric_shares(y[train]), n_bootstrap=0)
        out[test] = wrapper.adapt(proba[test])
    return out


def ci(low: float, high: float) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def report_scheme(
    frame: pd.DataFrame, y: np.ndarray, scheme: str, names: list[str], n_splits: int
) -> dict[str, np.ndarray]:
    """Cross-validate ``names`` under ``scheme``; print log loss raw and adapted, tie metrics."""
    start = time.perf_counter()
    table, preds = cross_validate(
        {n: make_model(n) for n in names}, frame, scheme=scheme, n_splits=n_splits
    )
    print(f"== {scheme} ({time.perf_counter() - start:.0f} s)")
    fold_rows = dict(folds(frame, scheme, n_splits))
    datasets = dataset_of(frame).to_numpy()
    parts = [("all", np.ones(len(y), bool))]
    if scheme != "grouped":
        parts += [(name, datasets == name) for name in fold_rows]
    for name in names:
        proba = preds[name]
        shifted = adapted(y, proba, list(fold_rows.values()))
        for held, mask in parts:
            row = table[(table.model == name) & (table.held_out == held)].iloc[0]
            raw_ci = ci(row["log_loss_ci_low"], row["log_loss_ci_high"])
            loss_adapted = row_log_loss(y[mask], shifted[mask])
            ties = tie_scores(y[mask], proba[mask])
            line = (
                f"  {name:<17} {held:<9} log loss {row['log_loss']:.4f} {raw_ci} "
                f"adapted {loss_adapted.mean():.4f} {ci(*bootstrap_mean_ci(loss_adapted))}  "
                f"acc {row['accuracy']:.3f}  tie LL {ties['tie_log_loss']:.4f} "
                f"{ci(*ties['tie_log_loss_ci'])} Brier {ties['tie_brier']:.4f} "
                f"{ci(*ties['tie_brier_ci'])} "
                f"P(tie) {ties['mean_p_tie']:.3f}/{ties['tie_share']:.3f}"
            )
            if held == "all":
                line += (
                    f"  train {row['train_pairs_per_s']:,.0f} / predict "
                    f"{row['predict_pairs_per_s']:,.0f} pairs/s"
                )
            print(line)
        if scheme != "grouped":
            oracle_verdicts(y, proba, shifted, fold_rows, name)
    verdicts(y, table, preds, names, scheme, parts)
    return preds


def oracle_verdicts(
    y: np.ndarray,
    proba: np.ndarray,
    shifted: np.ndarray,
    fold_rows: dict[str, np.ndarray],
    name: str,
) -> None:
    """Per held-out dataset: raw, adapted and oracle log loss; is half the gap closed?"""
    for held, test in fold_rows.items():
        train = np.setdiff1d(np.arange(len(y)), test)
        oracle = adjust_priors(proba[test], symmetric_shares(y[train]), symmetric_shares(y[test]))
        raw = row_log_loss(y[test], proba[test]).mean()
        adapt = row_log_loss(y[test], shifted[test]).mean()
        best = row_log_loss(y[test], oracle).mean()
        gap = raw - best
        # Below a thousandth of a nat the oracle gains nothing to close, and the ratio is noise.
        closed = (raw - adapt) / gap if gap > 1e-3 else float("nan")
        verdict = "no gap to close" if gap <= 1e-3 else ("met" if closed >= 0.5 else "NOT met")
        print(
            f"    {name} on {held}: raw {raw:.4f}, adapted {adapt:.4f}, oracle shift {best:.4f} "
            f"(tie share {np.mean(y[test] == 2):.3f}); gap closed {closed:+.2f}: {verdict}"
        )


def verdicts(
    y: np.ndarray,
    table: pd.DataFrame,
    preds: dict[str, np.ndarray],
    names: list[str],
    scheme: str,
    parts: list[tuple[str, np.ndarray]],
) -> None:
    """The default (or best non-anchor) model against the anchors, and against its members."""
    pooled = table[table.held_out == "all"].set_index("model")["log_loss"]
    candidates = [n for n in names if n not in ANCHORS]
    if not candidates:
        return
    best = min(candidates, key=lambda n: pooled[n])
    for model in dict.fromkeys([DEFAULT, best]):
        if model not in preds:
            continue
        for anchor in (a for a in ANCHORS if a in preds):
            gap, low, high = paired_gap(y, preds[anchor], preds[model])
            target = 0.02 if anchor == "length" else 0.0
            verdict = "met" if gap >= target and low > 0 else "NOT met"
            print(
                f"  {model} vs {anchor}: {pooled[anchor]:.4f} - {pooled[model]:.4f} = "
                f"{gap:+.4f} nats [{low:+.4f}, {high:+.4f}]; target >= {target:.2f} with the "
                f"interval above 0: {verdict}"
            )
    if DEFAULT not in preds:
        return
    for held, mask in parts:
        for member in (m for m in DEFAULT_MEMBERS if m in preds):
            gap, low, high = paired_gap(y[mask], preds[member][mask], preds[DEFAULT][mask])
            print(
                f"  {DEFAULT} vs member {member} on {held}: {gap:+.4f} [{low:+.4f}, {high:+.4f}] "
                f"({'not worse' if gap >= 0 else 'WORSE'})"
            )
    print()


def calibration_comparison(frame: pd.DataFrame, folds: int) -> None:
    """features-gbdt raw, temperature-scaled, and with the competition's threshold multiplier."""
    from crowdtune.preference import CALIBRATIONS, CalibratedPreferenceModel

    models = {
        f"features-gbdt + {method}": CalibratedPreferenceModel(
            estimator=make_model("features-gbdt"), method=method
        )
        for method in CALIBRATIONS
    }
    for scheme in SCHEMES:
        table, _ = cross_validate(models, frame, scheme=scheme, n_splits=folds)
        print(f"== calibration, {scheme}")
        for row in table[table.held_out == "all"].to_dict("records"):
            print(
                f"  {row['model']:<40} log loss {row['log_loss']:.4f} "
                f"{ci(row['log_loss_ci_low'], row['log_loss_ci_high'])}"
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated --model names")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-calibration", action="store_true")
    parser.add_argument("--campaigns", type=int, default=20, help="simulated DS campaigns")
    parser.add_argument("--bootstrap", type=int, default=50, help="DS bootstrap resamples")
    args = parser.parse_args()
    names = args.models.split(",")

    frame = comparisons_frame([c for src in SOURCES for c in load_comparisons(src)])
    y = frame["label"].to_numpy()
    print(f"{len(frame):,} comparisons from {', '.join(SOURCES)}; ties {np.mean(y == 2):.1%}")
    print(f"uniform guess: log loss {UNIFORM_LOG_LOSS:.4f}")
    if "embedding-gbdt" in names:
        from crowdtune.spaces.text import embed_texts

        start = time.perf_counter()
        embed_texts(pd.concat([frame.prompt, frame.response_a, frame.response_b]).tolist())
        print(f"embeddings ready in {time.perf_counter() - start:.1f} s (0 s when cached)")
    print(
        "columns: log loss [95% CI], adapted to the estimated tie share, accuracy, tie log loss "
        "and Brier of P(tie) alone, mean P(tie)/true tie share\n"
    )
    for scheme in SCHEMES:
        report_scheme(frame, y, scheme, names, args.folds)

    print("== Dawid-Skene vs majority vote (bench_reliability.py)")
    bench_reliability.simulated(args.campaigns, 200)
    bench_reliability.real(args.bootstrap)
    print()
    if not args.skip_calibration:
        calibration_comparison(frame, args.folds)


if __name__ == "__main__":
    main()
