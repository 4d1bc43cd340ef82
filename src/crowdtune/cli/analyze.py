"""``crowdtune analyze``: compare the linguistic distribution of fine-tuning and test texts.

SRC is a dataset of the data home (``@goemotions``, ``@hh-rlhf:helpful-base``,
``@hh-rlhf:harmless-base``, ``@car``; see :mod:`crowdtune.datasets.registry`) or a ``.txt``,
``.jsonl`` or ``.csv`` file with a ``text`` field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail, progress_bar
from crowdtune.tables import jsonable

analyze_app = typer.Typer(help="How far a test set lies, linguistically, from fine-tuning data.")


@analyze_app.callback()
def analyze_callback() -> None:
    """Linguistic analyses of text sets (a group, so that ``analyze distribution`` keeps its name
    when this is the only command)."""


_SRC_HELP = (
    "@goemotions[:train|dev|test], @hh-rlhf:helpful-base, @hh-rlhf:harmless-base (add "
    ":responses for the chosen replies), @car[:test|train|valid], or a .txt (one text per line), "
    ".jsonl or .csv file with a 'text' field (optional human_score, reward_score)."
)


def _load(option: str, src: str, max_texts: int | None, rng: np.random.Generator) -> pd.DataFrame:
    from crowdtune.datasets.registry import load_texts

    try:
        frame = load_texts(src)
    except (OSError, ValueError) as exc:
        fail(f"{option} {src}: {exc}")
    if len(frame) == 0:
        fail(f"{option} {src}: no texts")
    if max_texts is not None and len(frame) > max_texts:
        keep = np.sort(rng.choice(len(frame), max_texts, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    return frame


@analyze_app.command("distribution")
def distribution_cmd(
    train: str = typer.Option(..., "--train", help=f"SRC of the fine-tuning texts: {_SRC_HELP}"),
    test: str = typer.Option(..., "--test", help="SRC of the test texts (same forms as --train)."),
    out: Path = typer.Option(
        ..., "--out", help="Write features.csv, tests.csv, mismatch.csv, summary.json, report.html."
    ),
    max_texts: int | None = typer.Option(
        None, "--max-texts", help="Analyse at most N texts of each set (a random sample)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample and the resamples."),
    n_process: int = typer.Option(2, "--n-process", help="Worker processes for spaCy."),
    n_boot: int = typer.Option(
        200, "--n-boot", help="Bootstrap resamples and permutations of the divergences."
    ),
    json_out: bool = JsonOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Compare the linguistic features of fine-tuning and test texts.

    Sentence length, POS, lemmas and sentiment: tests, divergences and mismatched test texts.
    Follows "Investigating collapse on RL fine-tuning data distribution": every text gets its
    features (spaCy without parser and NER, VADER), each feature is tested between the sets (KS,
    Mann-Whitney, Benjamini-Hochberg), the pooled POS and lemma distributions are compared by
    Jensen-Shannon divergence, and each test text is flagged if it lies outside the training
    distribution (any feature beyond train mean ± 1.96 SD, as published, and a Mahalanobis
    distance). If the test set has human_score and reward_score, their agreement is measured on
    matched and mismatched texts.
    """
    if max_texts is not None and max_texts < 1:
        fail("--max-texts must be at least 1")
    if n_process < 1:
        fail("--n-process must be at least 1")
    if n_boot < 0:
        fail("--n-boot must be 0 or more")
    from crowdtune.curation.distribution import compare_distributions, score_agreement
    from crowdtune.curation.linguistic import text_features
    from crowdtune.reports.distribution import distribution_sections
    from crowdtune.reports.html import render_report

    rng = np.random.default_rng(seed)
    train_texts = _load("--train", train, max_texts, rng)
    test_texts = _load("--test", test, max_texts, rng)
    total = len(train_texts) + len(test_texts)
    try:
        with progress_bar(total, "linguistic features", progress) as advance:
            train_analysis = text_features(train_texts["text"].tolist(), n_process=n_process,
                                           progress=advance)  # fmt: skip
            test_analysis = text_features(test_texts["text"].tolist(), n_process=n_process,
                                          progress=advance)  # fmt: skip
    except OSError as exc:  # the spaCy model is missing
        fail(f"could not load the spaCy pipeline ({exc}); pip install 'crowdtune[nlp]'")
    comparison = compare_distributions(
        train_analysis, test_analysis, n_boot=n_boot, n_permutations=n_boot, rng=seed,
        test_ids=test_texts["id"].tolist(),
    )  # fmt: skip
    agreement = None
    if {"human_score", "reward_score"} <= set(test_texts.columns):
        paired = test_texts["human_score"].notna() & test_texts["reward_score"].notna()
        if paired.sum() >= 3:
            agreement = score_agreement(
                test_texts["human_score"].to_numpy(), test_texts["reward_score"].to_numpy(),
                comparison.mismatch["rule_mismatch"].to_numpy(), seed=seed,
            )  # fmt: skip
        else:
            err.print("note: fewer than 3 test texts have both scores; no score agreement")

    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for label, texts, analysis in (("train", train_texts, train_analysis),
                                   ("test", test_texts, test_analysis)):  # fmt: skip
        frame = analysis.features.copy()
        frame.insert(0, "set", label)
        frame.insert(0, "id", texts["id"].to_numpy())
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_csv(out / "features.csv", index=False)
    comparison.tests.to_csv(out / "tests.csv", index=False)
    # the text beside its flags, so that people can read what was flagged
    comparison.mismatch.assign(text=test_texts["text"].to_numpy()).to_csv(
        out / "mismatch.csv", index=False
    )
    summary = {
        "train": train, "test": test, "max_texts": max_texts, "seed": seed,
        **comparison.to_dict(),
        "score_agreement": agreement.to_dict() if agreement is not None else None,
    }  # fmt: skip
    summary = jsonable(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    render_report(
        out / "report.html",
        title=f"Linguistic distribution: {train} vs {test}",
        sections=distribution_sections(comparison, train, test, agreement),
        intro=f"Fine-tuning (train) texts: {train}. Test texts: {test}.",
    )
    if json_out:
        typer.echo(json.dumps(summary))
        return
    counts, mismatch = comparison.counts(), summary["mismatch"]
    typer.echo(
        f"train {counts['n_train']:,} texts ({counts['n_train_empty']} empty), "
        f"test {counts['n_test']:,} ({counts['n_test_empty']} empty)"
    )
    for key, result in comparison.jsd.items():
        typer.echo(
            f"JSD {key}: {result.jsd:.4f} (bias-corrected {result.jsd_corrected:.4f} "
            f"[{result.low:.4f}, {result.high:.4f}]), "
            f"chance {result.null_mean:.4f} (95% {result.null_q95:.4f}), p={result.p_value:.3f}"
        )
    typer.echo(
        f"significant features (BH 5%): {', '.join(summary['significant_features']) or 'none'}"
    )
    typer.echo(
        f"mismatched test texts: rule {mismatch['rule_count']:,} ({mismatch['rule_rate']:.1%}; "
        f"train itself {mismatch['rule_rate_on_train']:.1%}), Mahalanobis "
        f"{mismatch['mahalanobis_count']:,} ({mismatch['mahalanobis_rate']:.1%}; train itself "
        f"{mismatch['mahalanobis_rate_on_train']:.1%})"
    )
    typer.echo(f"wrote {out}/features.csv, tests.csv, mismatch.csv, summary.json, report.html")
