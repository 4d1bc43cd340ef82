"""``crowdtune demo``: the main job on the shipped defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import (
    ProgressOpt,
    SeedOpt,
    err,
    fail,
    progress_bar,
)
from crowdtune.cli.simulate import print_summary, save_grouping


def demo_cmd(
    out: Path = typer.Option(Path("reports/demo"), "--out", help="Where the report goes."),
    runs: int = typer.Option(500, "--runs", help="Seeded runs per strategy."),
    credit_runs: int = typer.Option(
        50, "--credit-runs", help="Seeded runs per point scheme in the credit comparison."
    ),
    embeddings: bool = typer.Option(
        False,
        "--embeddings/--no-embeddings",
        help="Include embedding-gbdt in the preference comparison and its ensemble (MiniLM "
        "embeds ~16k texts once, several minutes on 2 cores; cached afterwards).",
    ),
    seed: int = SeedOpt,
    progress: bool = ProgressOpt,
) -> None:
    """The main job on the shipped defaults: compare the three grouping strategies on MovieLens
    (published settings: 100 users, 4 groups, 100 rounds, L2, delta 0.1, p 2, error 0.05), then
    the point schemes against accurate Shapley values, then preference predictors on PandaLM,
    LLMEval² and MT-Bench (grouped and leave-one-dataset-out CV) and the MT-Bench leaderboard,
    then curation: quality scorers on CaR's expert pairs, a CaR selection, and the linguistic
    distributions of HH-RLHF helpful vs harmless prompts; print summaries and write an HTML
    report to OUT/index.html."""
    from crowdtune.crowd.credit import compare_credit
    from crowdtune.crowd.experiments import CrowdSpec, simulate_grouping
    from crowdtune.crowd.grouping import STRATEGIES
    from crowdtune.crowd.points import SCHEMES
    from crowdtune.crowd.rounds import RoundConfig
    from crowdtune.datasets import DatasetFormatError, DatasetMissingError
    from crowdtune.reports import credit_sections

    try:
        with progress_bar(runs * len(STRATEGIES), "grouping strategies", progress) as advance:
            result = simulate_grouping(
                CrowdSpec(), RoundConfig(), strategies=STRATEGIES, n_runs=runs, seed=seed,
                on_batch=advance,
            )  # fmt: skip
        err.print(f"credit: {len(SCHEMES)} point schemes x {credit_runs} runs, with Shapley values")
        credit = compare_credit(CrowdSpec(), RoundConfig(), SCHEMES, n_runs=credit_runs, seed=seed)
    except (DatasetMissingError, DatasetFormatError, ValueError) as exc:
        fail(str(exc))
    print_summary(result.summary(), "Crowd-SFT grouping on MovieLens (published settings)")
    table = Table(title="Points vs Shapley values, random grouping (mean over runs [95% CI])")
    for column in ("scheme", "Spearman", "Pearson"):
        table.add_column(column)
    for row in credit.summary.to_dict("records"):
        table.add_row(
            row["scheme"],
            *(
                f"{row[k]:.3f} [{row[k + '_low']:.3f}, {row[k + '_high']:.3f}]"
                for k in ("spearman", "pearson")
            ),
        )
    Console().print(table)
    preferences = preference_demo(embeddings=embeddings, seed=seed, progress=progress)
    curation = curation_demo(seed=seed, progress=progress)
    save_grouping(
        result,
        out,
        "csv",
        title="crowdtune demo",
        extra=credit_sections(credit) + preferences + curation,
    )
    index = (out / "report.html").replace(out / "index.html")
    err.print(f"report: {index}")


#: The comparison datasets of the demo's preference section.
DEMO_SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")


def preference_demo(*, embeddings: bool, seed: int, progress: bool) -> list[Any]:
    """Cross-validate the CPU predictors, print the table, and build the report sections."""
    from crowdtune.cli.preference import load_records, print_cv_table
    from crowdtune.preference import EnsembleModel, make_model
    from crowdtune.preference.cv import SCHEMES, compare_models, n_folds
    from crowdtune.preference.leaderboard import bradley_terry
    from crowdtune.records import comparisons_frame
    from crowdtune.reports.preference import preference_sections

    records = load_records(list(DEMO_SOURCES), seed=0)
    frame = comparisons_frame(records)
    names = ["length", "difference-bucket", "features-gbdt"] + (["embedding-gbdt"] * embeddings)
    models = {name: make_model(name, seed=seed) for name in names}
    models["ensemble"] = EnsembleModel(members=list(models.items()), seed=seed)
    total = len(models) * sum(n_folds(frame, s) for s in SCHEMES)
    with progress_bar(total, "preference models", progress) as advance:
        table, predictions = compare_models(models, frame, seed=seed, on_fold=lambda: advance(1))
    sources = ", ".join(DEMO_SOURCES)
    print_cv_table(table[table.held_out == "all"], f"{len(frame):,} comparisons from {sources}")
    mt_bench = comparisons_frame(r for r in records if r.source == "mt-bench")
    board = bradley_terry(mt_bench, seed=seed)
    return preference_sections(
        table,
        n=len(frame),
        sources=sources,
        labels=frame["label"].to_numpy(),
        calibrated_proba=predictions[("grouped", "ensemble")],
        calibrated_name="ensemble (temperature-calibrated)",
        leaderboard=board,
        leaderboard_title="MT-Bench human votes",
    )


def curation_demo(*, seed: int, progress: bool) -> list[Any]:
    """Quality scorers against the length rule, a CaR selection, HH-RLHF helpful vs harmless."""
    from crowdtune.curation.distribution import compare_distributions, text_features
    from crowdtune.curation.quality import default_scorer, evaluate_on_car
    from crowdtune.curation.select import car_select
    from crowdtune.datasets.car import car_items
    from crowdtune.datasets.texts import load_texts
    from crowdtune.reports.curation import curation_sections
    from crowdtune.reports.distribution import distribution_sections

    # model2vec embeddings keep the demo to seconds; `curate quality evaluate` uses MiniLM.
    fast = {"encoder": "m2v"}
    err.print("curation: quality scorers on CaR's 254 expert test pairs")
    evaluations = {
        f"embedding (m2v, {model})": evaluate_on_car(
            "embedding", seed=seed, params={**fast, "model": model}
        )
        for model in ("linear", "gbdt")
    }
    evaluations = {"length": evaluate_on_car("length", seed=seed), **evaluations}
    table = Table(title="Instruction quality: pairwise accuracy on CaR's expert test pairs")
    for column in ("scorer", "accuracy [95% CI]", "where longer is worse"):
        table.add_column(column)
    for name, r in evaluations.items():
        table.add_row(
            name,
            f"{r['accuracy']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}]",
            f"{r['accuracy_longer_worse']:.1%} of {r['n_longer_worse']}",
        )
    Console().print(table)
    pool = "CaR's expert pairs (both sides) and its published selection"
    selection = car_select(
        car_items(), default_scorer(params=fast), top_n=200, per_cluster=1, encoder="m2v",
        seed=seed, progress=progress,
    )  # fmt: skip
    coverage = selection.diversity
    covered = {name: d["clusters_covered"] for name, d in coverage.items()}
    err.print(
        f"selection: {len(selection.indices)} items cover {covered['selection']} of "
        f"{selection.k} clusters (random: {covered['random']}, top-n only: {covered['top_n_only']})"
    )
    err.print("distribution: HH-RLHF helpful-base vs harmless-base prompts")
    helpful = load_texts("@hh-rlhf:helpful-base")
    harmless = load_texts("@hh-rlhf:harmless-base")
    comparison = compare_distributions(
        text_features(helpful["text"].tolist()),
        text_features(harmless["text"].tolist()),
        rng=seed,
        test_ids=harmless["id"].tolist(),
    )
    return curation_sections(evaluations, selection, pool) + distribution_sections(
        comparison, "HH-RLHF helpful-base prompts", "HH-RLHF harmless-base prompts"
    )
