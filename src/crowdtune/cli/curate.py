"""``crowdtune curate``: curate instruction data (CaR selection: quality plus diversity).

DATA files are Alpaca-style instruction data: ``.jsonl`` (one object per line), ``.json`` (an
array, Alpaca's own format) or ``.csv``, with fields ``instruction``, ``input`` (optional) and
``output`` (see :mod:`crowdtune.datasets.instructions`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail

curate_app = typer.Typer(
    help="Curate instruction data: score quality, cluster, select a diverse high-quality subset.",
    no_args_is_help=True,
)


@curate_app.callback()
def curate_main() -> None:
    """Curate instruction data (CaR: Clustering and Ranking, Ge et al. 2024)."""


def make_quality_scorer(name: str, encoder: str = "minilm") -> Any:
    """The scorer ``--scorer`` names.

    ``default``: the embedding scorer fitted on CaR's expert revisions, on ``encoder``'s embeddings
    (fitted once, then cached); ``length``: the response length; an existing path: a scorer saved
    by :func:`crowdtune.curation.scoring.save_scorer`.
    """
    from crowdtune.curation import scoring

    if name == "default":
        return scoring.default_scorer(params={"encoder": encoder})
    if Path(name).exists():
        return scoring.load_scorer(name)
    if name != "length":
        raise ValueError(
            f"{name!r} needs fitting: use default, length or the path of a saved scorer"
        )
    return scoring.make_scorer(name)


def _diversity_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"diversity: {summary['n_selected']:,} of {summary['n_items']:,} items")
    for column in ("subset", "items", "clusters covered", "share", "mean cosine distance"):
        table.add_column(column, justify="left" if column == "subset" else "right")
    for name, label in (
        ("selection", "CaR selection"),
        ("random", "random"),
        ("top_n_only", "top by score only"),
    ):
        row = summary["diversity"][name]
        table.add_row(
            label,
            f"{row['n']:,}",
            f"{row['clusters_covered']}/{row['clusters_total']}",
            f"{row['cluster_share']:.3f}",
            f"{row['mean_cosine_distance']:.4f}",
        )
    return table


@curate_app.command("select")
def select_cmd(
    data: Path = typer.Option(..., "--data", help="Instruction data: .jsonl, .json or .csv."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Selection to write (.jsonl, .json or .csv; + .gz to compress), with "
        "score and cluster columns.",
    ),
    top_n: int = typer.Option(1000, "--top-n", help="Items taken by quality score alone (CaR)."),
    per_cluster: int = typer.Option(
        1, "--per-cluster", help="Best items of each cluster added unless already selected."
    ),
    scorer: str = typer.Option(
        "default",
        "--scorer",
        help="Quality scorer: default (the embedding scorer fitted on CaR's expert revisions, on "
        "the --encoder embeddings; fitted once, then cached), length (of the response), or the "
        "path of a scorer saved by crowdtune.curation.scoring.save_scorer.",
    ),
    encoder: str = typer.Option(
        "minilm", "--encoder", help="Embeddings for clustering: minilm (CaR's) or m2v (fast)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of PCA, k-means and the random baseline."),
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Select CaR's subset: the top N by quality plus the best item of every cluster.

    Prints the per-stage seconds and the diversity of the selection beside a random subset and
    the top-by-score-only subset of the same size. --json prints the summary as one object.
    """
    from crowdtune.curation.select import car_select
    from crowdtune.datasets.instructions import instruction_format, read_instructions
    from crowdtune.spaces.text import ENCODERS

    if instruction_format(out) is None:
        fail(f"--out {out}: the name must end in .jsonl, .json or .csv (optionally + .gz)")
    if encoder not in ENCODERS:
        fail(f"unknown --encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
    if top_n < 0 or per_cluster < 0:
        fail("--top-n and --per-cluster must be >= 0")
    try:
        items = read_instructions(data)
    except (OSError, ValueError) as exc:
        fail(f"--data {data}: {exc}")
    if len(items) < top_n:
        fail(f"--data {data} has {len(items):,} items, fewer than --top-n {top_n:,}")
    try:
        quality_scorer = make_quality_scorer(scorer, encoder)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"--scorer {scorer}: {exc}")
    err.print(f"selecting from {len(items):,} items ({scorer} scorer, {encoder} embeddings)")
    result = car_select(
        items,
        quality_scorer,
        top_n=top_n,
        per_cluster=per_cluster,
        encoder=encoder,
        seed=seed,
        progress=None if progress else False,
    )
    from crowdtune.datasets.instructions import write_instructions

    write_instructions(result.selected.reset_index(drop=True), out)
    summary = {**result.summary(), "scorer": scorer, "encoder": encoder, "out": str(out)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console = Console()
    stages = ", ".join(f"{name} {s:.1f} s" for name, s in result.seconds.items())
    console.print(
        f"k = {result.k} clusters on {result.pca_dims} PCA dims "
        f"({result.explained_variance:.1%} of the variance); {stages}; "
        f"total {result.total_seconds:.1f} s"
    )
    console.print(_diversity_table(summary))
    err.print(f"wrote {len(result.indices):,} items to {out}")


quality_app = typer.Typer(help="Instruction quality scorers trained on CaR's expert revisions.")
curate_app.add_typer(quality_app, name="quality")


@quality_app.command("evaluate")
def quality_evaluate_cmd(
    scorer: str = typer.Option(
        "embedding",
        "--scorer",
        help="length (the longer answer wins), embedding (MiniLM + text features, trained "
        "pairwise) or cross-encoder (LoRA on a causal LM; --base-model tiny on CPU, a real "
        "model on a GPU).",
    ),
    model: str = typer.Option(
        "gbdt", "--model", help="embedding scorer: linear (Bradley-Terry logistic) or gbdt."
    ),
    encoder: str = typer.Option(
        "minilm",
        "--encoder",
        help="embedding scorer: minilm (the published embedding; ~13 min to embed CaR once on "
        "2 cores, then cached) or m2v (model2vec distilled from it, seconds).",
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="cross-encoder: a model name or path (default tiny)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="cross-encoder only."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scorer and the bootstrap."),
    as_json: bool = JsonOpt,
) -> None:
    """Fit a scorer on CaR train (parameters chosen on valid, refitted on train + valid) and
    report its pairwise accuracy on the 254 expert test pairs, with a 95% bootstrap CI, beside
    the length rule; also how much of its accuracy length explains (accuracy where the longer
    answer is better vs worse). --json prints {"accuracy", "ci_low", "ci_high", "n",
    "length_baseline_accuracy", ...}."""
    from crowdtune.curation.scoring import SCORERS, evaluate_on_car

    if scorer not in SCORERS:
        fail(f"unknown --scorer {scorer!r}; choose one of: {', '.join(SCORERS)}")
    params: dict[str, Any] = {}
    if scorer == "embedding":
        if model not in ("linear", "gbdt"):
            fail(f"unknown --model {model!r}; choose linear or gbdt")
        params = {"model": model, "encoder": encoder}
    elif scorer == "cross-encoder":
        params = {k: v for k, v in (("model", base_model), ("max_steps", max_steps)) if v}
    err.print(f"fitting the {scorer} scorer on CaR train (choosing parameters on valid)")
    try:
        result = evaluate_on_car(scorer, seed=seed, params=params)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable(result)))
        return
    console = Console()
    console.print(
        f"{scorer}: pairwise accuracy {result['accuracy']:.1%} "
        f"[{result['ci_low']:.1%}, {result['ci_high']:.1%}] on {result['n']} expert test pairs; "
        f"length rule {result['length_baseline_accuracy']:.1%}; "
        f"published IQS {result['published_iqs_accuracy']:.2%}"
    )
    console.print(
        f"where the longer answer is better ({result['n_longer_better']}): "
        f"{result['accuracy_longer_better']:.1%}; where it is worse ({result['n_longer_worse']}): "
        f"{result['accuracy_longer_worse']:.1%}; agrees with the length rule on "
        f"{result['agreement_with_length']:.1%} of pairs"
    )
