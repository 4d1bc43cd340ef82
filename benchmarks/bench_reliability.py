"""Benchmark: Dawid–Skene annotator reliability against majority vote (issue #21, item 4).

It prints

- a simulated crowd where the truth is known (:func:`~crowdtune.preference.reliability.
  simulate_votes`): 8 annotators right with probability 0.8, a contrarian (never right) and a
  random voter, each voting once on 200 items (priors 0.4 / 0.4 / 0.2 tie), in ``--campaigns``
  campaigns: the largest error of the recovered accuracies (against the nominal accuracy and
  against the accuracy each annotator showed in that campaign), how often the contrarian and the
  random voter are the two lowest, and how often the Dawid–Skene and the majority label are right;
- PandaLM's three annotators: their accuracies with intervals, and how often the Dawid–Skene
  label equals PandaLM's gold (the majority of the three, the label the dataset ships);
- MT-Bench's human judges: how many, and the spread of their accuracies;
- training labels on MT-Bench (``--sections labels``): a predictor fitted on every vote, on each
  item's majority, on its hard Dawid–Skene label and on its soft one (the posterior as sample
  weights, what ``preference fit --labels dawid-skene`` does), in 5-fold CV grouped by question
  (Dawid–Skene refitted on the training folds' votes only), scored by the log loss of the
  held-out *votes*, with paired bootstrap intervals of each difference to "votes".

Targets: accuracies within 0.05; contrarian and random ranked lowest in >= 95 % of campaigns.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import CalibratedPreferenceModel, make_model, prompt_groups
from crowdtune.preference.calibration import fit_weighted
from crowdtune.preference.metrics import row_log_loss
from crowdtune.preference.reliability import (
    confusion,
    dawid_skene,
    item_labels,
    simulate_votes,
    soft_labels,
)
from crowdtune.records import comparisons_frame
from crowdtune.stats import bootstrap_mean_ci

CROWD = [confusion(0.8)] * 8 + [confusion(0.0), confusion(1 / 3)]
NOMINAL = np.array([0.8] * 8 + [0.0, 1 / 3])
NAMES = [f"annotator{j}" for j in range(len(CROWD))]


def simulated(campaigns: int, n_items: int) -> None:
    nominal_error, realised_error, bottom, ds_right, majority_right = [], [], 0, [], []
    start = time.perf_counter()
    for seed in range(campaigns):
        frame, truth = simulate_votes(CROWD, n_items=n_items, seed=seed)
        result = dawid_skene(frame, n_bootstrap=0)
        estimated = result.annotators.set_index("annotator").accuracy.reindex(NAMES).to_numpy()
        realised = (frame.label.to_numpy() == truth).reshape(n_items, -1).mean(axis=0)
        nominal_error.append(np.abs(estimated - NOMINAL))
        realised_error.append(np.abs(estimated - realised))
        bottom += set(result.annotators.annotator[:2]) == {"annotator8", "annotator9"}
        first = ~frame.duplicated("id").to_numpy()  # one row per item
        ds_right.append(np.mean(result.row_posteriors().argmax(axis=1)[first] == truth[first]))
        items = result.items.set_index("id").loc[frame.id[first]]
        majority_right.append(np.mean(items.majority.to_numpy() == truth[first]))
    seconds = time.perf_counter() - start
    print(f"simulated crowd: {campaigns} campaigns x {n_items} items, {seconds:.1f} s")
    for name, errors in (("nominal", nominal_error), ("realised", realised_error)):
        errors = np.asarray(errors)  # (campaigns, annotators)
        worst = errors.max(axis=1)
        print(f"  |accuracy error| vs {name}: mean {errors.mean():.3f}, per annotator within 0.05 "
              f"{np.mean(errors < 0.05):.1%}; worst of 10: median {np.median(worst):.3f}, "
              f"all within 0.05 in {np.mean(worst < 0.05):.0%} of campaigns")  # fmt: skip
    print(f"  contrarian and random ranked lowest: {bottom}/{campaigns}")
    ds, majority = np.mean(ds_right), np.mean(majority_right)
    print(f"  label accuracy: Dawid-Skene {ds:.3f}, majority {majority:.3f}"
          " (majority ties count as wrong)")  # fmt: skip


def real(bootstrap: int) -> None:
    panda = dawid_skene(comparisons_frame(load_comparisons("@pandalm:annotators")),
                        n_bootstrap=bootstrap)  # fmt: skip
    print("PandaLM, 3 annotators (accuracy [95% CI], agreement with majority of the others):")
    for row in panda.annotators.itertuples():
        print(f"  {row.annotator}: {row.accuracy:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}], "
              f"{row.majority_agreement:.3f}")  # fmt: skip
    print(
        f"  DS label = PandaLM gold (majority of 3) on {panda.agreement_with_majority:.1%} of "
        f"{int((panda.items.majority >= 0).sum())} items; priors {np.round(panda.priors, 3)}"
    )
    mt = dawid_skene(comparisons_frame(load_comparisons("@mt-bench")), n_bootstrap=bootstrap)
    table = mt.annotators
    q = np.quantile(table.accuracy, [0, 0.25, 0.5, 0.75, 1])
    n_votes = int(table.n_votes.sum())
    print(f"MT-Bench: {len(table)} judges, {len(mt.items)} items, {n_votes} votes; "
          f"votes per judge median {table.n_votes.median():.0f}; accuracy min/q1/median/q3/max "
          + " / ".join(f"{v:.3f}" for v in q))  # fmt: skip
    width = (table.ci_high - table.ci_low).median()
    print(
        f"  median CI width {width:.3f}; DS label = majority on {mt.agreement_with_majority:.1%} "
        f"of {int((mt.items.majority >= 0).sum())} items with one; priors {np.round(mt.priors, 3)}"
    )
    print("  lowest 3:", ", ".join(f"{r.annotator} {r.accuracy:.2f} ({r.n_votes} votes)"
                                    for r in table.head(3).itertuples()))  # fmt: skip


#: The training labels compared on MT-Bench: votes, majority, hard and soft Dawid–Skene.
TRAINING_LABELS = ("votes", "majority", "dawid-skene hard", "dawid-skene soft")


def training_rows(train: pd.DataFrame, labels: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The rows (and sample weights) a predictor trains on under each of TRAINING_LABELS."""
    if labels == "votes":
        return train, None
    if labels == "dawid-skene soft":
        rows = soft_labels(train)
        return rows, rows.pop("weight").to_numpy()
    return item_labels(train, labels.removesuffix(" hard")), None


def label_cv(models: list[str], folds: int, seed: int) -> None:
    frame = comparisons_frame(load_comparisons("@mt-bench", seed=seed))
    y = frame.label.to_numpy()
    splits = list(GroupKFold(folds, shuffle=True, random_state=seed).split(
        frame, groups=prompt_groups(frame)))  # fmt: skip
    print(f"training labels on MT-Bench: {len(frame)} votes, {folds}-fold CV grouped by "
          "question; log loss of the held-out votes (temperature-calibrated, as `preference "
          "fit`)")  # fmt: skip
    for name in models:
        losses = {labels: np.zeros(len(frame)) for labels in TRAINING_LABELS}
        start = time.perf_counter()
        for train, test in splits:
            for labels in TRAINING_LABELS:
                rows, weights = training_rows(frame.iloc[train], labels)
                model = CalibratedPreferenceModel(estimator=make_model(name, seed=seed),
                                                  random_state=seed)  # fmt: skip
                fit_weighted(model, rows, rows.label.to_numpy(), weights)
                losses[labels][test] = row_log_loss(y[test], model.predict_proba(frame.iloc[test]))
        seconds = time.perf_counter() - start
        print(f"  {name} ({seconds:.0f} s):")
        for labels in TRAINING_LABELS:
            loss = losses[labels]
            low, high = bootstrap_mean_ci(loss, seed=seed)
            line = f"    {labels:17s} {loss.mean():.4f} [{low:.4f}, {high:.4f}]"
            if labels != "votes":
                diff = loss - losses["votes"]
                d_low, d_high = bootstrap_mean_ci(diff, seed=seed)
                line += f"; minus votes {diff.mean():+.4f} [{d_low:+.4f}, {d_high:+.4f}]"
            print(line)


SECTIONS = ("simulated", "real", "labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)}")  # fmt: skip
    parser.add_argument("--label-models", default="length,features-gbdt",
                        help="predictors of the labels section")  # fmt: skip
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sections = args.sections.split(",")
    if "simulated" in sections:
        simulated(args.campaigns, args.items)
    if "real" in sections:
        real(args.bootstrap)
    if "labels" in sections:
        label_cv(args.label_models.split(","), args.folds, args.seed)


if __name__ == "__main__":
    main()
