"""``crowdtune preference``: fit, apply, score and cross-validate A/B/tie predictors.

SRC is a file (arena CSV or JSONL) or a dataset of the data home (``@pandalm``, ``@llmeval2``,
``@mt-bench``, ``@hh-rlhf``, ``@car``; see ``crowdtune data list``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail, progress_bar

preference_app = typer.Typer(
    help="Predict which answer people prefer (A, B or tie).\n\n"
    "Fit, apply, score and cross-validate the predictors; they are scored by log loss. SRC is an "
    "arena CSV or JSONL file, or a dataset of the data home (see `crowdtune data list`)."
)

DataOpt = typer.Option(
    ...,
    "--data",
    help="SRC: an arena CSV or JSONL file, or @pandalm, @pandalm:annotators, @llmeval2, "
    "@mt-bench, @hh-rlhf, @car. Repeat to combine.",
)
PrefSeedOpt = typer.Option(0, "--seed", help="Seed of A/B randomisation, folds and models.")


@contextmanager
def reading(src: str) -> Iterator[None]:
    """Read SRC inside: a bad source is a clean exit naming it (status 2, no traceback), and
    what the reader repaired (a :class:`~crowdtune.datasets.DatasetRepairWarning`) is a note on
    stderr."""
    from crowdtune.datasets import DatasetRepairWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetRepairWarning)
        try:
            yield
        except (OSError, ValueError) as exc:
            fail(f"--data {src}: {exc}")
    for warning in caught:
        if issubclass(warning.category, DatasetRepairWarning):
            err.print(f"[yellow]note:[/] --data {src}: {warning.message}", highlight=False)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def load_records(sources: list[str], seed: int = 0) -> list[Any]:
    """The comparisons of every SRC in order, or a clean exit naming the bad source."""
    from crowdtune.datasets.registry import load_comparisons

    records = []
    for src in sources:
        with reading(src):
            records += load_comparisons(src, seed=seed)
    if not records:
        fail(f"--data {' '.join(sources)}: no comparisons")
    return records


def load_pair_frame(sources: list[str], seed: int = 0) -> pd.DataFrame:
    """The pairs of every SRC as one frame, labels not needed (an arena CSV may be Kaggle's
    ``test.csv``), or a clean exit naming the bad source."""
    from crowdtune.datasets.registry import load_pairs

    frames = []
    for src in sources:
        with reading(src):
            frames.append(load_pairs(src, seed=seed))
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        fail(f"--data {' '.join(sources)}: no comparisons")
    return frame


def load_frame(sources: list[str], seed: int = 0) -> pd.DataFrame:
    """The comparisons of every SRC as one frame (see :func:`load_records`)."""
    from crowdtune.records import comparisons_frame

    return comparisons_frame(load_records(sources, seed))


def resolve_calibration(model: str, calibration: str) -> str:
    """``auto``: temperature for single CPU models; none for the ensemble (a temperature fitted
    across datasets made it worse on a dataset left out) and for the transformer (five extra
    fine-tunes are not worth it by default)."""
    if calibration != "auto":
        return calibration
    return "none" if model in ("ensemble", "transformer") else "temperature"


@preference_app.command("fit")
def fit_cmd(
    data: list[str] = DataOpt,
    model: str = typer.Option(
        "ensemble",
        "--model",
        help="length, difference-bucket, features-gbdt, embedding-gbdt, tie-aware, transformer or "
        "ensemble (the default: length, tie-aware and features-gbdt averaged with equal weights, "
        "the model that transferred best to a dataset it never saw).",
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    calibration: str = typer.Option(
        "auto",
        "--calibration",
        help="temperature, threshold-multiplier (the competition's post-processing) or none, "
        "fitted on out-of-fold predictions; auto = temperature except for the ensemble (a "
        "temperature made it worse on unseen datasets) and the transformer.",
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="transformer only: a model name or path (default: tiny)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="transformer only."),
    labels: str = typer.Option(
        "votes",
        "--labels",
        help="votes (the default: every vote a training row), majority (one row per item, "
        "hard-labelled by its votes' majority; items whose votes tie for the top are left out) "
        "or dawid-skene (soft labels: each item's Dawid–Skene posterior, which weighs each "
        "annotator by their estimated reliability; the item is a training row once per class, "
        "with the class's posterior probability as its sample weight).",
    ),
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit a predictor on comparisons and save it to --out.

    It learns from every comparison of the sources (or, with --labels, from each item's
    label), in both A/B orders. meta.json records the labels used (`labels`, `targets`: hard
    or soft) and the counts of votes, items and training rows.
    """
    from crowdtune.preference import CALIBRATIONS, MODELS, make_model, save_model
    from crowdtune.preference.calibration import CalibratedPreferenceModel, fit_weighted
    from crowdtune.preference.priors import symmetric_shares
    from crowdtune.preference.reliability import LABELS, item_labels, soft_labels

    if model not in MODELS:
        fail(f"unknown --model {model!r}; choose one of: {', '.join(MODELS)}")
    if calibration not in ("auto", *CALIBRATIONS):
        fail(f"unknown --calibration {calibration!r}; choose auto or {', '.join(CALIBRATIONS)}")
    params: dict[str, Any] = {}
    if model == "transformer":
        params = {k: v for k, v in (("model", base_model), ("max_steps", max_steps)) if v}
    elif base_model or max_steps:
        fail("--base-model and --max-steps apply to --model transformer only")
    if labels not in ("votes", *LABELS):
        fail(f"unknown --labels {labels!r}; choose votes, {', '.join(LABELS)}")
    frame = load_frame(data, seed)
    n_votes, weights = len(frame), None
    if labels != "votes":
        try:
            frame = soft_labels(frame) if labels == "dawid-skene" else item_labels(frame, labels)
        except ValueError as exc:
            fail(f"--labels {labels}: {exc}")
        if labels == "dawid-skene":
            weights = frame.pop("weight").to_numpy()
    n_items = n_votes if labels == "votes" else len(frame) // (3 if weights is not None else 1)
    if labels != "votes":
        what = "soft labels: a row per class" if weights is not None else "one row each"
        err.print(f"--labels {labels}: {n_votes:,} votes on {n_items:,} items ({what})")
    method = resolve_calibration(model, calibration)
    estimator = make_model(model, seed=seed, **params)
    if method != "none":
        estimator = CalibratedPreferenceModel(estimator=estimator, method=method, random_state=seed)
    how = "equal weights, uncalibrated" if model == "ensemble" else f"{method} calibration"
    err.print(f"fitting {model} on {len(frame):,} rows ({how})")
    start = time.perf_counter()
    try:
        fit_weighted(estimator, frame, frame["label"].to_numpy(), weights)
    except ValueError as exc:
        fail(str(exc))
    seconds = time.perf_counter() - start
    summary = {
        "model": model,
        "calibration": method,
        "data": data,
        "n": len(frame),
        "labels": labels,
        "targets": "soft (posterior as sample weight)" if weights is not None else "hard",
        "n_votes": n_votes,
        "n_items": n_items,
        # What `predict|evaluate --adapt-priors` re-weights from.
        "train_priors": symmetric_shares(frame["label"].to_numpy(), weights).tolist(),
        "fit_seconds": seconds,
        "train_pairs_per_s": len(frame) / seconds,
        "out": str(out),
    }
    save_model(estimator, model, out, meta=summary)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        err.print(f"fitted in {seconds:.1f} s ({len(frame) / seconds:,.0f} pairs/s); wrote {out}/")


AdaptOpt = typer.Option(
    False,
    "--adapt-priors",
    help="Re-weight the probabilities to the A/B/tie shares estimated from these pairs (EM on "
    "the predictions, symmetric in A and B; Saerens et al. 2002); prints the shares with a 95% "
    "bootstrap CI.",
)


def _load(model_dir: Path, adapt_priors: bool = False, seed: int = 0) -> Any:
    from crowdtune.preference import load_model

    try:
        return load_model(model_dir, adapt_priors=adapt_priors, seed=seed)[0]
    except (OSError, ValueError) as exc:
        fail(f"--model-dir {model_dir}: {exc}")


def print_priors(priors: dict[str, Any]) -> None:
    """The training and estimated class shares, with the estimate's interval, on stderr."""
    parts = []
    for name in priors["estimated"]:
        low, high = priors["ci"][name] if priors["ci"] else (float("nan"), float("nan"))
        parts.append(
            f"{name} {priors['estimated'][name]:.3f} [{low:.3f}, {high:.3f}] "
            f"(train {priors['train'][name]:.3f})"
        )
    err.print("estimated class shares: " + ", ".join(parts))


@preference_app.command("predict")
def predict_cmd(
    model_dir: Path = typer.Option(..., "--model-dir", help="Written by `preference fit`."),
    data: list[str] = DataOpt,
    out: Path = typer.Option(
        ..., "--out", help="CSV to write: id, winner_model_a, winner_model_b, winner_tie."
    ),
    adapt_priors: bool = AdaptOpt,
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write P(A), P(B) and P(tie) of each comparison to a CSV.

    The CSV has the columns of the competition's submissions: `id`, `winner_model_a`,
    `winner_model_b`, `winner_tie`, one row per pair in the order of --data. The data need no
    labels: an arena CSV may be Kaggle's test.csv (`id, prompt, response_a, response_b`).
    `--json` prints `{"n", "out", "seconds"}` and, with `--adapt-priors`,
    `"priors": {"train", "estimated", "ci"}` (shares of a, b, tie).
    """
    model = _load(model_dir, adapt_priors, seed)
    frame = load_pair_frame(data, seed)
    start = time.perf_counter()
    proba = model.predict_proba(frame)
    seconds = time.perf_counter() - start
    table = pd.DataFrame(proba, columns=["winner_model_a", "winner_model_b", "winner_tie"])
    table.insert(0, "id", frame["id"].to_numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    summary: dict[str, Any] = {"n": len(frame), "out": str(out), "seconds": seconds}
    if adapt_priors:
        summary["priors"] = model.priors_summary()
        print_priors(summary["priors"])
    err.print(f"{len(frame):,} predictions in {seconds:.1f} s; wrote {out}")
    if as_json:
        typer.echo(json.dumps(summary))


@preference_app.command("evaluate")
def evaluate_cmd(
    model_dir: Path = typer.Option(..., "--model-dir", help="Written by `preference fit`."),
    data: list[str] = DataOpt,
    adapt_priors: bool = AdaptOpt,
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Log loss (95% CI) and accuracy of a fitted predictor.

    The interval is a bootstrap over comparisons. `--json` prints
    `{"log_loss", "accuracy", "n", "log_loss_ci": [lo, hi]}`; with `--adapt-priors` the scores
    are of the adapted probabilities, and it adds `"unadapted"` (the same scores without
    adaptation) and `"priors": {"train", "estimated", "ci", "observed"}` (shares of a, b, tie;
    observed from the labels, in both A/B orders).
    """
    from crowdtune.preference import UNIFORM_LOG_LOSS, evaluate_proba
    from crowdtune.preference.priors import symmetric_shares

    model = _load(model_dir, adapt_priors, seed)
    frame = load_frame(data, seed)
    labels = frame["label"].to_numpy()
    if adapt_priors:
        raw = model.estimator_.predict_proba(frame)
        scores = evaluate_proba(labels, model.adapt(raw), seed=seed)
        scores["unadapted"] = evaluate_proba(labels, raw, seed=seed)
        observed = symmetric_shares(labels)
        scores["priors"] = {
            **model.priors_summary(),
            "observed": dict(zip(("a", "b", "tie"), map(float, observed), strict=True)),
        }
        print_priors(scores["priors"])
    else:
        scores = evaluate_proba(labels, model.predict_proba(frame), seed=seed)
    if as_json:
        typer.echo(json.dumps(scores))
        return
    low, high = scores["log_loss_ci"]
    Console().print(
        f"log loss {scores['log_loss']:.4f} [{low:.4f}, {high:.4f}] "
        f"(uniform {UNIFORM_LOG_LOSS:.4f}), "
        f"accuracy {scores['accuracy']:.3f}, n {scores['n']:,}"
    )
    if adapt_priors:
        raw_scores = scores["unadapted"]
        Console().print(
            f"without adaptation: log loss {raw_scores['log_loss']:.4f}, "
            f"accuracy {raw_scores['accuracy']:.3f}; observed tie share "
            f"{scores['priors']['observed']['tie']:.3f}"
        )


@preference_app.command("cv")
def cv_cmd(
    data: list[str] = DataOpt,
    models: str = typer.Option(
        "length,difference-bucket,features-gbdt,embedding-gbdt,tie-aware,ensemble",
        "--models",
        help="Comma-separated model names.",
    ),
    scheme: list[str] = typer.Option(
        ["grouped", "leave-one-dataset-out"],
        "--scheme",
        help="grouped (k-fold, folds grouped by prompt) and/or leave-one-dataset-out (train on "
        "all sources but one, test on it); repeat for both (the default).",
    ),
    folds: int = typer.Option(5, "--folds", help="Folds of the grouped scheme."),
    out: Path | None = typer.Option(None, "--out", help="Write cv.csv and predictions.csv here."),
    seed: int = PrefSeedOpt,
    progress: bool = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cross-validate predictors: log loss, accuracy and speed.

    Prints one row per model and scheme: log loss with its 95% CI, accuracy, and pairs per second
    in training and prediction. Leave-one-dataset-out pools the held-out predictions; its
    per-dataset rows are in `--json` and cv.csv.
    """
    from crowdtune.preference import MODELS, make_model
    from crowdtune.preference.cv import SCHEMES as CV_SCHEMES
    from crowdtune.preference.cv import compare_models, n_folds

    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        if name not in MODELS:
            fail(f"unknown model {name!r} in --models; choose from: {', '.join(MODELS)}")
    for s in scheme:
        if s not in CV_SCHEMES:
            fail(f"unknown --scheme {s!r}; choose from: {', '.join(CV_SCHEMES)}")
    if folds < 2:
        fail("--folds must be at least 2")
    frame = load_frame(data, seed)
    total = len(names) * sum(n_folds(frame, s, folds) for s in scheme)
    with progress_bar(total, "cross-validation", progress) as advance:
        try:
            result, preds = compare_models(
                {n: make_model(n, seed=seed) for n in names}, frame, scheme, folds, seed,
                on_fold=lambda: advance(1),
            )  # fmt: skip
        except ValueError as exc:
            fail(str(exc))
    predictions = [
        pd.DataFrame(
            {"scheme": s, "model": name, "id": frame["id"], "label": frame["label"],
             "p_a": proba[:, 0], "p_b": proba[:, 1], "p_tie": proba[:, 2]}
        )
        for (s, name), proba in preds.items()
    ]  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result.to_csv(out / "cv.csv", index=False)
        pd.concat(predictions).to_csv(out / "predictions.csv", index=False)
        err.print(f"wrote {out}/cv.csv and predictions.csv")
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable({"n": len(frame), "rows": result.to_dict("records")})))
        return
    print_cv_table(
        result[result["held_out"] == "all"], f"{len(frame):,} comparisons from {', '.join(data)}"
    )


def print_cv_table(table: pd.DataFrame, title: str) -> None:
    """One row per model and scheme: log loss [95% CI], accuracy, throughput."""
    out = Table(title=title)
    for column in (
        "model",
        "scheme",
        "log loss [95% CI]",
        "accuracy",
        "train pairs/s",
        "predict pairs/s",
    ):
        out.add_column(column, justify="left" if column in ("model", "scheme") else "right")
    for row in table.to_dict("records"):
        out.add_row(
            row["model"],
            row["scheme"],
            f"{row['log_loss']:.4f} [{row['log_loss_ci_low']:.4f}, {row['log_loss_ci_high']:.4f}]",
            f"{row['accuracy']:.3f}",
            f"{row['train_pairs_per_s']:,.0f}",
            f"{row['predict_pairs_per_s']:,.0f}",
        )
    Console().print(out)


def leaderboard_cmd(
    data: list[str] = DataOpt,
    ties: str = typer.Option(
        "half",
        "--ties",
        help="half (a tie is half a win and half a loss, as Chatbot Arena) or davidson (an "
        "explicit tie parameter fitted by maximum likelihood).",
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap draws for the 95% CIs."),
    base: float = typer.Option(1000.0, "--base", help="Rating of the anchor (or of the mean)."),
    anchor: str | None = typer.Option(None, "--anchor", help="Model pinned to --base."),
    style_control: bool = typer.Option(
        False, "--style-control", help="Length and markdown differences as covariates."
    ),
    online: bool = typer.Option(False, "--online-elo", help="Also the sequential Elo (k=4)."),
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Bradley-Terry ratings of models, with bootstrap 95% intervals.

    The models are those the comparisons name; ratings are on the Elo scale, and a model's rank
    is 1 + the number of models whose interval lies wholly above its own.
    """
    from crowdtune.preference.bradley_terry import online_elo
    from crowdtune.preference.leaderboard import bradley_terry

    frame = load_frame(data, seed)
    battles = frame.dropna(subset=["model_a", "model_b"])
    if battles.empty:
        fail(f"--data {' '.join(data)}: no comparison names its models (model_a, model_b)")
    try:
        board = bradley_terry(
            battles, ties=ties, base=base, anchor=anchor, style_control=style_control,
            n_bootstrap=bootstrap, seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        fail(str(exc))
    result = board.to_dict()
    elo = online_elo(battles, base=base) if online else None
    if elo is not None:
        result["online_elo"] = {str(k): float(v) for k, v in elo.items()}
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable(result)))
        return
    table = Table(title=f"Bradley-Terry ({ties} ties), {len(battles):,} battles")
    for column in ("rank", "model", "rating [95% CI]", "battles", "W / L / T"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if elo is not None:
        table.add_column("online Elo", justify="right")
    for row in board.table.to_dict("records"):
        cells = [
            str(row["rank"]),
            row["model"],
            f"{row['rating']:.0f} [{row['ci_low']:.0f}, {row['ci_high']:.0f}]",
            f"{row['n_battles']:,}",
            f"{row['wins']:g} / {row['losses']:g} / {row['ties']:g}",
        ]
        table.add_row(*cells, *([f"{elo[row['model']]:.0f}"] if elo is not None else []))
    Console().print(table)
    for row in board.parameters.to_dict("records"):
        err.print(
            f"{row['parameter']}: {row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        )


def agreement_cmd(
    data: list[str] = DataOpt,
    min_shared: int = typer.Option(
        10, "--min-shared", help="Items two annotators must share for their Cohen's kappa."
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", help="Bootstrap draws over items (dawid-skene: default 200)."
    ),
    model: str = typer.Option(
        "coefficients",
        "--model",
        help="coefficients (kappas and alpha; the default) or dawid-skene (each annotator's "
        "confusion matrix and accuracy, each item's posterior label, majority vote alongside).",
    ),
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Agreement among annotators who voted on the same items.

    Cohen's kappa per pair of annotators, Fleiss' kappa, Krippendorff's alpha (nominal), and each
    annotator against the majority of the others. Items are matched by content (the prompt and
    the two responses, in either order). `--model dawid-skene` fits a confusion matrix per
    annotator instead (Dawid–Skene by EM, with bootstrap intervals over items).
    """
    from crowdtune.preference.agreement import agreement

    if model not in ("coefficients", "dawid-skene"):
        fail(f"unknown --model {model!r}; choose coefficients or dawid-skene")
    frame = load_frame(data, seed)
    if frame["annotator"].isna().all():
        fail(f"--data {' '.join(data)}: no comparison names its annotator")
    if model == "dawid-skene":
        _dawid_skene(frame, bootstrap, seed, as_json)
        return
    try:
        result = agreement(frame, min_shared=min_shared, n_bootstrap=bootstrap, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable(result.to_dict())))
        return
    console = Console()
    console.print(
        f"{result.n_items:,} items with 2+ votes, {result.n_annotators} annotators, "
        f"{result.n_votes:,} votes"
    )
    for name, c in (
        ("Fleiss' kappa", result.fleiss),
        ("Krippendorff's alpha", result.krippendorff),
    ):
        console.print(
            f"{name}: {c.estimate:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}] ({c.n_items} items)"
        )
    table = Table(title=f"Cohen's kappa, pairs sharing >= {min_shared} items")
    for column in ("annotator 1", "annotator 2", "shared", "kappa", "equal labels"):
        table.add_column(column)
    for row in result.pairwise.to_dict("records"):
        table.add_row(
            row["annotator_1"], row["annotator_2"], str(row["n_shared"]),
            f"{row['kappa']:.3f}", f"{row['observed']:.3f}",
        )  # fmt: skip
    console.print(table)


def _dawid_skene(frame: pd.DataFrame, bootstrap: int, seed: int, as_json: bool) -> None:
    """`agreement --model dawid-skene`: fit, then print JSON or the annotators' table."""
    from crowdtune.preference.reliability import dawid_skene

    voted = frame[frame["annotator"].notna()]
    if len(voted) < len(frame):
        err.print(f"note: {len(frame) - len(voted):,} comparisons name no annotator; left out")
    try:
        result = dawid_skene(voted, n_bootstrap=min(bootstrap, 200), seed=seed)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        from crowdtune.tables import jsonable

        typer.echo(json.dumps(jsonable(result.to_dict())))
        return
    console = Console()
    a, b, tie = result.priors
    console.print(
        f"Dawid–Skene: {len(result.items):,} items, {len(result.annotators)} annotators, "
        f"{int(result.annotators.n_votes.sum()):,} votes; class shares A {a:.3f}, B {b:.3f}, "
        f"tie {tie:.3f}; labels equal the majority on {result.agreement_with_majority:.1%} of "
        "items with one"
    )
    table = Table(title="Annotators, least reliable first")
    for column in ("annotator", "votes", "accuracy [95% CI]", "agrees with majority of others"):
        table.add_column(column)
    for row in result.annotators.to_dict("records"):
        table.add_row(
            row["annotator"], f"{row['n_votes']:,}",
            f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]",
            f"{row['majority_agreement']:.3f} ({row['majority_items']} items)",
        )  # fmt: skip
    console.print(table)
