"""``crowdtune projects``: create feedback projects of the three kinds (pairwise votes, revisions,
ratings), import their items, and export what the crowd gave."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from crowdtune.cli.common import fail
from crowdtune.cli.db import DbOpt, store_session

projects_app = typer.Typer(
    help="Feedback projects: create, import items, export answers.\n\n"
    "A project is pairwise (compare two answers: A, B or tie), revision (rewrite an answer) or "
    "rating (score an answer on a scale, 1 to 7 by default)."
)

#: What ``--kind`` accepts, with what the crowd does in each.
KINDS = {
    "pairwise": "compare two answers (A, B or tie)",
    "revision": "rewrite an answer",
    "rating": "score an answer on a scale",
}
_SCALE = re.compile(r"^\s*(-?\d+)\s*(?:-|\.\.|:)\s*(-?\d+)\s*$")


def parse_scale(text: str) -> tuple[int, int]:
    """``"1-7"`` (or ``1..7``, ``1:7``, ``-3-3``) as ``(1, 7)``; a clean exit otherwise."""
    match = _SCALE.match(text)
    if match is None:
        fail(f"--scale {text!r}: expected LOW-HIGH, two whole numbers such as 1-7")
    assert match is not None  # fail exits
    return int(match.group(1)), int(match.group(2))


def load_items(data: str, limit: int | None, gold_share: float, seed: int) -> list[dict[str, Any]]:
    """The first ``limit`` comparisons of ``data`` as items of a pairwise project; a random
    ``gold_share`` of them keep their verdict as gold. Exits cleanly naming the bad option or
    source."""
    from crowdtune.cli.preference import load_records
    from crowdtune.store.repository import comparison_items

    if not 0 <= gold_share <= 1:
        fail(f"--gold-share must be between 0 and 1, got {gold_share}")
    records = load_records([data], seed=seed)[:limit]
    return comparison_items(records, gold_share=gold_share, seed=seed)


def load_single_items(
    data: str,
    kind: str,
    *,
    scale: tuple[int, int] | None,
    limit: int | None,
    gold_share: float,
    seed: int,
) -> list[dict[str, Any]]:
    """The first ``limit`` items of a revision or rating project from ``data``: ``@car`` (or
    another revision dataset: its original answers, with its expert revisions as references
    of a revision project) or a ``.jsonl`` / ``.csv`` file of items
    (:func:`crowdtune.datasets.read_items`). A random ``gold_share`` of them keep their gold
    answer (reference, or gold score); the rest lose it. Exits cleanly naming the bad
    source."""
    from crowdtune.datasets import read_items, revision_items
    from crowdtune.datasets.registry import load_revisions
    from crowdtune.records import DEFAULT_SCALE
    from crowdtune.store.repository import gold_rows

    if not 0 <= gold_share <= 1:
        fail(f"--gold-share must be between 0 and 1, got {gold_share}")
    try:
        if data.startswith("@"):
            items = revision_items(load_revisions(data))
        else:
            items = read_items(Path(data), kind, scale=scale or DEFAULT_SCALE)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        fail(f"--data {data}: {exc}")
    items = items[:limit]
    if not items:
        fail(f"--data {data}: no items")
    gold = gold_rows(len(items), gold_share, seed=seed)
    answer = "reference" if kind == "revision" else "gold"
    for i, item in enumerate(items):
        for key in ("reference", "gold"):
            if key != answer or i not in gold:
                item.pop(key, None)
    return items


@projects_app.command("create")
def projects_create_cmd(
    name: str = typer.Option(..., "--name", help="Unique name of the project."),
    kind: str = typer.Option(
        "pairwise",
        "--kind",
        help="pairwise (compare two answers: A, B or tie), revision (rewrite an answer) or "
        "rating (score an answer on --scale).",
    ),
    overlap: int = typer.Option(3, "--overlap", help="Distinct annotators per item (k)."),
    scale: str | None = typer.Option(
        None, "--scale", help="rating only: the whole-number scores, LOW-HIGH (default 1-7)."
    ),
    assignment: str = typer.Option(
        "depth",
        "--assignment",
        help="depth: an annotator gets an item others have started, so items reach k answers "
        "steadily and agreement shows early; breadth: the least assigned item first.",
    ),
    editor_prefill: bool | None = typer.Option(
        None,
        "--editor-prefill/--empty-editor",
        help="revision only: the editor starts with the answer to revise (default) or empty.",
    ),
    base_model: str = typer.Option(
        "tiny",
        "--base-model",
        help="The model the first Crowd-SFT round of language models starts from: tiny, "
        "smollm2, a folder or a hub name.",
    ),
    db: str = DbOpt,
) -> None:
    """Create a project; prints its id.

    Each item goes to --overlap distinct annotators. Import items with `crowdtune projects
    import`, collect answers with `crowdtune serve`, and export them with `crowdtune projects
    export`.
    """
    from crowdtune.store.repository import create_project

    if kind not in KINDS:
        fail(f"unknown --kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if scale is not None and kind != "rating":
        fail(f"--scale is for rating projects, not {kind} ones")
    if editor_prefill is not None and kind != "revision":
        fail(f"--editor-prefill / --empty-editor is for revision projects, not {kind} ones")
    bounds = None if scale is None else parse_scale(scale)
    with store_session(db) as session:
        project = create_project(
            session,
            name,
            overlap=overlap,
            kind=kind,
            scale=bounds,
            assignment=assignment,
            editor_prefill=True if editor_prefill is None else editor_prefill,
            base_model=base_model,
        )
        details = [f"id {project.id}", f"overlap {project.overlap}"]
        if project.scale is not None:
            details.append(f"scale {project.scale[0]}-{project.scale[1]}")
        details.append(f"{project.assignment} assignment")
        if project.base_model != "tiny":
            details.append(f"base model {project.base_model}")
        if kind == "revision" and not project.editor_prefill:
            details.append("empty editor")
    typer.echo(f"created {kind} project {name!r} ({', '.join(details)})")


@projects_app.command("import")
def projects_import_cmd(
    project: str = typer.Option(..., "--project", help="Name of an existing project."),
    data: str = typer.Option(
        ...,
        "--data",
        help="pairwise: @pandalm, @llmeval2, @mt-bench, @hh-rlhf, @car, an arena CSV or JSONL. "
        "revision or rating: @car (CaR's original answers; for a revision project its expert "
        "revisions as references), or a .jsonl or .csv file of prompt, response and optional "
        "id and reference (revision) or gold (rating: a score or [low, high]).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Import only the first N items."),
    gold_share: float | None = typer.Option(
        None,
        "--gold-share",
        help="Share of items (chosen at random) that keep their known answer as gold, for "
        "quality checks: a verdict (pairwise; default 0, and gold items score the candidates "
        "of Crowd-SFT rounds), a reference revision or a gold score (default 1: all kept).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the gold choice and A/B order."),
    db: str = DbOpt,
) -> None:
    """Import items to annotate into a project.

    Reads --data (a dataset of the data home or a file) as the project's kind needs it:
    comparisons for a pairwise project, single answers for a revision or rating one. Stores
    all of its items or, on an error, none.
    """
    from crowdtune.store import repository as repo

    with store_session(db) as session:
        target = repo.project_by_name(session, project)
        kind, scale, target_id = target.kind, target.scale, target.id
        session.commit()  # end the read: no transaction stays open while the data loads
        if kind == "pairwise":
            share = 0.0 if gold_share is None else gold_share
            items = load_items(data, limit, share, seed)
        else:
            share = 1.0 if gold_share is None else gold_share
            items = load_single_items(
                data, kind, scale=scale, limit=limit, gold_share=share, seed=seed
            )
        repo.add_items(session, target_id, items)
    n_gold = sum(item.get(key) is not None for item in items for key in ("gold", "reference"))
    typer.echo(
        f"imported {len(items)} items ({n_gold} with gold answers) into {kind} project {target_id}"
    )


@projects_app.command("export")
def projects_export_cmd(
    project: str = typer.Option(..., "--project", help="Name of the project."),
    out: Path = typer.Option(..., "--out", help="File to write (a name ending in .gz compresses)."),
    export_format: str = typer.Option(
        "jsonl",
        "--format",
        help="pairwise: arena-csv, jsonl (one vote per line) or trl (prompt, chosen, rejected). "
        "revision: jsonl (one revision per line), sft (chat messages for TRL's SFTTrainer) or "
        "trl (the revision chosen over the original, for the reward and DPO trainers). rating: "
        "jsonl (one rating per line), csv or kto (prompt, completion, label for KTOTrainer).",
    ),
    ties: str = typer.Option(
        "drop", "--ties", help="pairwise trl only: drop ties, or keep them with a `tie` field."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="rating kto only: a score above it is desirable (default: the middle of the scale).",
    ),
    db: str = DbOpt,
) -> None:
    """Export every answer of a project to a file that trains.

    The formats are those of the project's kind (see --format); what the web API's export
    gives, in the same layout. CSV cells a spreadsheet would run as a formula get a quote in
    front; skipped tasks are left out.
    """
    from fastapi import HTTPException

    from crowdtune.server.services import export_formats, write_export
    from crowdtune.store import repository as repo

    if ties not in ("drop", "keep"):
        fail(f"unknown --ties {ties!r}; choose drop or keep")
    with store_session(db) as session:
        target = repo.project_by_name(session, project)
        formats = export_formats(target.kind)
        if export_format not in formats:
            fail(
                f"--format {export_format!r} does not fit the {target.kind} project "
                f"{project!r}; choose one of: {', '.join(formats)}"
            )
        try:
            written = write_export(
                session,
                target.id,
                export_format,
                out,
                ties="keep" if ties == "keep" else "drop",
                threshold=threshold,
            )
        except HTTPException as exc:
            fail(f"{str(exc.detail).replace('threshold', '--threshold')}")
        except OSError as exc:
            fail(f"--out {out}: {exc}")
    left = (
        f" ({written.left_out} left out: the format cannot hold them)" if written.left_out else ""
    )
    typer.echo(
        f"wrote the {written.answers} answers of {target.kind} project {project!r} to {out} "
        f"as {export_format}{left}"
    )
