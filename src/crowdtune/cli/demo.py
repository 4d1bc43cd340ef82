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
        help="Include embedding-gbdt in the preference comparison (MiniLM "
        "embeds ~16k texts once, several minutes on 2 cores; cached afterwards).",
    ),
    train: bool = typer.Option(
        True,
        "--train/--no-train",
        help="Run the tiny training pipeline (SFT, reward, DPO, assess; about a minute).",
    ),
    loop: bool = typer.Option(
        True,
        "--loop/--no-loop",
        help="Run the Crowd-SFT loop through a real server and worker: a scripted crowd revises "
        "CaR answers over HTTP, 3 sft rounds on the tiny model (about a minute).",
    ),
    seed: int = SeedOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Every stage on the shipped defaults, with an HTML report.

    The main job, stage by stage:

    - credit: the three grouping strategies on MovieLens (published settings: 100 users,
      4 groups, 100 rounds, L2, delta 0.1, p 2, error 0.05), then the point schemes against
      accurate Shapley values;
    - model: preference predictors on PandaLM, LLMEval² and MT-Bench (grouped and
      leave-one-dataset-out CV) and the MT-Bench leaderboard;
    - curate: quality scorers on CaR's expert pairs, a CaR selection, and the linguistic
      distributions of HH-RLHF helpful vs harmless prompts;
    - train and assess: the tiny training pipeline (SFT, reward model, DPO, assessment on
      held-out CaR prompts);
    - the loop: a revision campaign on CaR answers through `crowdtune serve --worker`, revised
      by a scripted crowd (6 expert, 3 lazy, 3 adversarial) over HTTP, 3 sft rounds of 4 groups
      on the tiny model, the lineage's gold NLL by round and each behaviour's credit.

    Prints the summaries and writes the report to --out/index.html.
    """
    from crowdtune.crowd.grouping import STRATEGIES
    from crowdtune.crowd.points import SCHEMES
    from crowdtune.crowd.simulation.credit import compare_credit
    from crowdtune.crowd.simulation.experiments import CrowdSpec, simulate_grouping
    from crowdtune.crowd.simulation.rounds import RoundConfig
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
    training = train_demo(out / "train", seed=seed) if train else []
    looped = loop_demo(out / "loop", seed=seed) if loop else []
    save_grouping(
        result,
        out,
        "csv",
        title="crowdtune demo",
        extra=credit_sections(credit) + preferences + curation + training + looped,
    )
    index = (out / "report.html").replace(out / "index.html")
    err.print(f"report: {index}")


#: The comparison datasets of the demo's preference section.
DEMO_SOURCES = ("@pandalm", "@llmeval2", "@mt-bench")


def preference_demo(*, embeddings: bool, seed: int, progress: bool) -> list[Any]:
    """Cross-validate the CPU predictors, print the table, and build the report sections."""
    from crowdtune.cli.preference import load_records, print_cv_table
    from crowdtune.preference.cpu_comparison import compare_cpu_predictors, cpu_comparison_fits
    from crowdtune.preference.leaderboard import bradley_terry
    from crowdtune.records import comparisons_frame
    from crowdtune.reports.preference import preference_sections

    records = load_records(list(DEMO_SOURCES), seed=0)
    frame = comparisons_frame(records)
    total = cpu_comparison_fits(frame, embeddings=embeddings)
    with progress_bar(total, "preference models", progress) as advance:
        table, predictions = compare_cpu_predictors(
            frame, embeddings=embeddings, seed=seed, on_fold=lambda: advance(1)
        )
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
        calibrated_name="ensemble (equal weights)",
        leaderboard=board,
        leaderboard_title="MT-Bench human votes",
    )


def curation_demo(*, seed: int, progress: bool) -> list[Any]:
    """Quality scorers against the length rule, a CaR selection, HH-RLHF helpful vs harmless."""
    from crowdtune.curation.distribution import compare_distributions
    from crowdtune.curation.linguistic import text_features
    from crowdtune.curation.scorer_comparison import compare_quality_scorers
    from crowdtune.curation.scoring import default_scorer
    from crowdtune.curation.select import car_select
    from crowdtune.datasets.car import car_items
    from crowdtune.datasets.registry import load_texts
    from crowdtune.reports.curation import curation_sections
    from crowdtune.reports.distribution import distribution_sections

    # model2vec embeddings keep the demo to seconds; `curate quality evaluate` uses MiniLM.
    err.print("curation: quality scorers on CaR's 254 expert test pairs")
    evaluations = compare_quality_scorers(encoder="m2v", seed=seed)
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
        car_items(), default_scorer(params={"encoder": "m2v"}), top_n=200, per_cluster=1,
        encoder="m2v", seed=seed, progress=progress,
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


#: The demo's training data: the first rows of CaR (original Alpaca answers against expert
#: rewrites), and the held-out prompts it is assessed on.
TRAIN_DEMO_DATA = "@car"
TRAIN_DEMO_PROMPTS = "@car:test"


def loop_demo(out: Path, *, seed: int) -> list[Any]:
    """The Crowd-SFT loop through a real server and worker
    (:func:`crowdtune.server.campaign.run_loop_campaign`); prints the rounds and the credit per
    behaviour, writes ``summary.json`` beside the campaign's database, returns the section."""
    import json

    from crowdtune.datasets import DatasetFormatError, DatasetMissingError
    from crowdtune.reports.loop import loop_sections
    from crowdtune.server.campaign import LoopSettings, run_loop_campaign

    try:
        summary = run_loop_campaign(out, LoopSettings(seed=seed), say=err.print)
    except (DatasetMissingError, DatasetFormatError, RuntimeError, ValueError) as exc:
        fail(f"loop: {exc}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    table = Table(title="Crowd-SFT loop: gold NLL of the base by round (lower is better)")
    for column in ("round", "base", "base NLL", "winner", "winner − base [95% CI]", "base changed"):
        table.add_column(column)
    for row in summary["rounds"]:
        difference = (
            "—"
            if row["difference"] is None
            else f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        )
        table.add_row(
            str(row["round"]), row["base"], f"{row['base_nll']:.3f}", str(row["winner"]),
            difference, "yes" if row["base_changed"] else "no",
        )  # fmt: skip
    Console().print(table)
    credit = ", ".join(
        f"{name} {row['mean_credit']:+.3f}" if row["mean_credit"] is not None else f"{name} —"
        for name, row in summary["per_behaviour"].items()
    )
    rho = summary["spearman_credit_quality"]
    err.print(
        f"loop credit by behaviour (mean): {credit}; Spearman with quality "
        f"{'n/a' if rho is None else f'{rho:.2f}'}"
    )
    return loop_sections(summary)


def train_demo(out: Path, *, seed: int) -> list[Any]:
    """The ``tiny`` pipeline end to end (:func:`crowdtune.training.pipeline.run_pipeline`).

    Prints the numbers and the commands that run the same on SmolLM2 or a bigger model; returns
    the report section.
    """
    from crowdtune.cli.assess import print_assessment
    from crowdtune.reports.training import assessment_sections
    from crowdtune.training.pipeline import run_pipeline

    def report(stage: str, m: dict[str, Any]) -> None:
        extra = (
            f", held-out reward accuracy {m['reward_accuracy']:.2f}"
            if m.get("reward_accuracy") is not None
            else ""
        )
        err.print(
            f"train {stage}: {m['steps']} steps, loss {m['first_loss']:.3f} -> "
            f"{m['last_loss']:.3f}{extra} ({m['train_seconds']:.1f} s)"
        )

    result = run_pipeline(
        out, data=TRAIN_DEMO_DATA, prompts=TRAIN_DEMO_PROMPTS, seed=seed, on_stage=report
    )
    print_assessment(
        result.assessment, f"Training: tiny DPO against tiny SFT on {TRAIN_DEMO_PROMPTS}"
    )
    err.print(
        f"train: SFT -> reward -> DPO -> assess in {result.seconds:.0f} s. The tiny model starts "
        "from random weights, so these numbers show the pipeline, not a useful model. The same on "
        "SmolLM2-135M-Instruct with LoRA, on CaR's expert revisions (on a 2-core CPU about 10 s "
        "per reward step and 34 s per DPO step; 100 reward steps reach 0.84 held-out accuracy on "
        "CaR but stay at chance on HH-RLHF: benchmarks/RESULTS.md):"
    )
    typer.echo(train_commands("smollm2", "--lora --max-steps 100", "@car:train", "@car:test"))
    err.print("and on a bigger model on a GPU (any checkpoint folder or hub name):")
    typer.echo(train_commands("HuggingFaceTB/SmolLM2-1.7B-Instruct", "--lora --batch-size 16"))
    return assessment_sections(result.assessment, result.metrics, result.seconds)


def train_commands(
    model: str, options: str, data: str = "@hh-rlhf", prompts: str | None = None, runs: str = "runs"
) -> str:
    """The shell commands of the training pipeline on ``model``, trained on ``data`` and assessed
    on ``prompts`` (default: the held-out prompts of ``data``), as the demo prints them."""
    prompts = prompts or data
    return "\n".join(
        [
            f"crowdtune train sft --model {model} {options} --data {data} --out {runs}/sft",
            f"crowdtune train reward --model {model} {options} --data {data} --out {runs}/reward",
            f"crowdtune train dpo --model {runs}/sft {options} --data {data} --out {runs}/dpo",
            f"crowdtune assess --base {runs}/sft --tuned {runs}/dpo --prompts {prompts} "
            f"--reward-model {runs}/reward --n-prompts 200",
        ]
    )
