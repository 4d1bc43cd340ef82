"""``crowdtune preference``: fit, apply, score and cross-validate A/B/tie predictors.

SRC is a file (arena CSV or JSONL) or a dataset of the data home (``@pandalm``, ``@llmeval2``,
``@mt-bench``, ``@hh-rlhf``, ``@car``; see ``crowdtune data list``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from crowdtune.cli.common import JsonOpt, ProgressOpt, err, fail, progress_bar

preference_app = typer.Typer(
    help="Preference predictors: which answer people prefer (A, B or tie), scored by log loss."
)

DataOpt = typer.Option(
    ...,
    "--data",
    help="SRC: an arena CSV or JSONL file, or @pandalm, @pandalm:annotators, @llmeval2, "
    "@mt-bench, @hh-rlhf, @car. Repeat to combine.",
)
PrefSeedOpt = typer.Option(0, "--seed", help="Seed of A/B randomisation, folds and models.")


def load_frame(sources: list[str], seed: int = 0) -> pd.DataFrame:
    """The comparisons of every SRC as one frame, or a clean exit naming the bad source."""
    from crowdtune.datasets.preference_sets import load_comparisons
    from crowdtune.records import comparisons_frame

    frames = []
    for src in sources:
        try:
            frames.append(comparisons_frame(load_comparisons(src, seed=seed)))
        except (OSError, ValueError) as exc:
            fail(f"--data {src}: {exc}")
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        fail(f"--data {' '.join(sources)}: no comparisons")
    return frame


def resolve_calibration(model: str, calibration: str) -> str:
    """``auto``: temperature for single CPU models; none for the ensemble (it calibrates itself)
    and for the transformer (five extra fine-tunes are not worth it by default)."""
    if calibration != "auto":
        return calibration
    return "none" if model in ("ensemble", "transformer") else "temperature"


@preference_app.command("fit")
def fit_cmd(
    data: list[str] = DataOpt,
    model: str = typer.Option(
        "ensemble",
        "--model",
        help="length, difference-bucket, features-gbdt, embedding-gbdt, transformer or ensemble "
        "(the CPU models averaged with out-of-fold weights and calibrated; the default).",
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    calibration: str = typer.Option(
        "auto",
        "--calibration",
        help="temperature, threshold-multiplier (the competition's post-processing) or none, "
        "fitted on out-of-fold predictions; auto = temperature except for the ensemble, which "
        "calibrates itself, and the transformer.",
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="transformer only: a model name or path (default: tiny)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="transformer only."),
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit a predictor on every comparison of the sources (both A/B orders) and save it to OUT."""
    from crowdtune.preference import CALIBRATIONS, MODELS, make_model, save_model
    from crowdtune.preference.calibration import CalibratedPreferenceModel

    if model not in MODELS:
        fail(f"unknown --model {model!r}; choose one of: {', '.join(MODELS)}")
    if calibration not in ("auto", *CALIBRATIONS):
        fail(f"unknown --calibration {calibration!r}; choose auto or {', '.join(CALIBRATIONS)}")
    params: dict[str, Any] = {}
    if model == "transformer":
        params = {k: v for k, v in (("model", base_model), ("max_steps", max_steps)) if v}
    elif base_model or max_steps:
        fail("--base-model and --max-steps apply to --model transformer only")
    frame = load_frame(data, seed)
    method = resolve_calibration(model, calibration)
    estimator = make_model(model, seed=seed, **params)
    if method != "none":
        estimator = CalibratedPreferenceModel(estimator, method=method, seed=seed)
    err.print(f"fitting {model} on {len(frame):,} comparisons ({method} calibration)")
    start = time.perf_counter()
    try:
        estimator.fit(frame, frame["label"].to_numpy())
    except ValueError as exc:
        fail(str(exc))
    seconds = time.perf_counter() - start
    summary = {
        "model": model,
        "calibration": method,
        "data": data,
        "n": len(frame),
        "fit_seconds": seconds,
        "train_pairs_per_s": len(frame) / seconds,
        "out": str(out),
    }
    save_model(estimator, model, out, meta=summary)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        err.print(f"fitted in {seconds:.1f} s ({len(frame) / seconds:,.0f} pairs/s); wrote {out}/")


def _load(model_dir: Path) -> Any:
    from crowdtune.preference import load_model

    try:
        return load_model(model_dir)[0]
    except (OSError, ValueError) as exc:
        fail(f"--model-dir {model_dir}: {exc}")


@preference_app.command("predict")
def predict_cmd(
    model_dir: Path = typer.Option(..., "--model-dir", help="Written by `preference fit`."),
    data: list[str] = DataOpt,
    out: Path = typer.Option(
        ..., "--out", help="CSV to write: id, winner_model_a, winner_model_b, winner_tie."
    ),
    seed: int = PrefSeedOpt,
) -> None:
    """Predict P(A), P(B), P(tie) per comparison, as a competition submission CSV."""
    model = _load(model_dir)
    frame = load_frame(data, seed)
    start = time.perf_counter()
    proba = model.predict_proba(frame)
    seconds = time.perf_counter() - start
    table = pd.DataFrame(proba, columns=["winner_model_a", "winner_model_b", "winner_tie"])
    table.insert(0, "id", frame["id"].to_numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    err.print(f"{len(frame):,} predictions in {seconds:.1f} s; wrote {out}")


@preference_app.command("evaluate")
def evaluate_cmd(
    model_dir: Path = typer.Option(..., "--model-dir", help="Written by `preference fit`."),
    data: list[str] = DataOpt,
    seed: int = PrefSeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Log loss (95% bootstrap CI over comparisons), accuracy and n of a fitted predictor.

    --json prints {"log_loss", "accuracy", "n", "log_loss_ci": [lo, hi]}.
    """
    from crowdtune.preference import UNIFORM_LOG_LOSS, evaluate_proba

    model = _load(model_dir)
    frame = load_frame(data, seed)
    scores = evaluate_proba(frame["label"].to_numpy(), model.predict_proba(frame), seed=seed)
    if as_json:
        typer.echo(json.dumps(scores))
        return
    low, high = scores["log_loss_ci"]
    Console().print(
        f"log loss {scores['log_loss']:.4f} [{low:.4f}, {high:.4f}] "
        f"(uniform {UNIFORM_LOG_LOSS:.4f}), "
        f"accuracy {scores['accuracy']:.3f}, n {scores['n']:,}"
    )


SCHEMES = ("grouped", "leave-one-dataset-out")


@preference_app.command("cv")
def cv_cmd(
    data: list[str] = DataOpt,
    models: str = typer.Option(
        "length,difference-bucket,features-gbdt,embedding-gbdt,ensemble",
        "--models",
        help="Comma-separated model names.",
    ),
    scheme: list[str] = typer.Option(
        list(SCHEMES),
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
    """Cross-validate predictors: log loss with 95% CIs, accuracy, train/predict pairs per second.

    Prints one row per model and scheme (leave-one-dataset-out pools the held-out predictions;
    per-dataset rows are in --json and cv.csv).
    """
    from crowdtune.preference import MODELS, make_model
    from crowdtune.preference.cv import cross_validate, n_folds

    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        if name not in MODELS:
            fail(f"unknown model {name!r} in --models; choose from: {', '.join(MODELS)}")
    for s in scheme:
        if s not in SCHEMES:
            fail(f"unknown --scheme {s!r}; choose from: {', '.join(SCHEMES)}")
    if folds < 2:
        fail("--folds must be at least 2")
    frame = load_frame(data, seed)
    tables, predictions = [], []
    for s in scheme:
        total = len(names) * n_folds(frame, s, folds)
        with progress_bar(total, f"cv {s}", progress) as advance:
            try:
                table, preds = cross_validate(
                    {n: make_model(n, seed=seed) for n in names}, frame, s, folds, seed,
                    on_fold=lambda: advance(1),
                )  # fmt: skip
            except ValueError as exc:
                fail(str(exc))
        tables.append(table)
        for name, proba in preds.items():
            predictions.append(
                pd.DataFrame(
                    {"scheme": s, "model": name, "id": frame["id"], "label": frame["label"],
                     "p_a": proba[:, 0], "p_b": proba[:, 1], "p_tie": proba[:, 2]}
                )
            )  # fmt: skip
    result = pd.concat(tables, ignore_index=True)
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
