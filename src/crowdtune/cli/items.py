"""``crowdtune items``: new items of a project answered by the models of its lineage, so the
crowd's next answers judge the current base (:mod:`crowdtune.crowd.generated`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from crowdtune.cli.common import JsonOpt, ProgressOpt, fail, progress_bar
from crowdtune.cli.db import DbOpt, store_session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crowdtune.crowd.generated import ItemModel
    from crowdtune.store.models import Project

items_app = typer.Typer(help="Items answered by a project's models: close the loop.")


def find_project(session: Session, project: str) -> Project:
    """The project named ``project``, else the one whose id it is (a store error exits)."""
    from crowdtune.store import NotFoundError
    from crowdtune.store import repository as repo

    try:
        return repo.project_by_name(session, project)
    except NotFoundError:
        if not project.isdigit():
            raise
        return repo.get_project(session, int(project))


def lineage_model(session: Session, project_id: int, spec: str) -> ItemModel:
    """The model ``spec`` names for a project: ``base`` (the lineage's base, else the project's
    ``base_model``), the name of a model of its lineage, or a model as
    :func:`crowdtune.training.load_trained` takes it (``tiny``, ``smollm2``, a folder), named as
    given."""
    from crowdtune.crowd.generated import ItemModel
    from crowdtune.store import repository as repo

    if spec == "base":
        name, path = repo.project_base_model(session, project_id)
        return ItemModel(name, path)
    for model in repo.project_models(session, project_id):
        if spec in (model.name, model.path):
            return ItemModel(model.name, model.path)
    return ItemModel(spec, spec)


def previous_base(session: Session, project_id: int) -> ItemModel:
    """The model the current base was trained from (the base before the last switch); exits
    naming ``--model-b`` when the project has had no base but its first."""
    from crowdtune.store import repository as repo

    models = {model.name: model for model in repo.project_models(session, project_id)}
    base = next((model for model in models.values() if model.is_base), None)
    if base is None or base.parent is None or base.parent not in models:
        fail(
            "the project's base has no previous base to compare it with (no round has "
            "replaced it yet): name the second model with --model-b"
        )
    assert base is not None and base.parent is not None
    parent = models[base.parent]
    return lineage_model(session, project_id, parent.name)


@items_app.command("generate")
def items_generate_cmd(
    project: str = typer.Option(..., "--project", help="The project's name (or id)."),
    model: str = typer.Option(
        "base",
        "--model",
        help="Who answers: base (the project's current base model), a model of its lineage by "
        "name, or tiny, smollm2, a checkpoint or LoRA adapter folder.",
    ),
    model_b: str | None = typer.Option(
        None,
        "--model-b",
        help="pairwise only: the second model, as --model (default: the base before the "
        "current one).",
    ),
    prompts: str = typer.Option(
        ..., "--prompts", help="SRC of prompts: @car:test, @hh-rlhf, a JSONL of prompts ..."
    ),
    n: int = typer.Option(16, "--n", min=1, help="Prompts to answer (distinct, shuffled)."),
    max_new_tokens: int = typer.Option(
        64, "--max-new-tokens", min=1, help="New tokens per answer at most."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per forward pass."),
    chat_template: bool = typer.Option(
        False,
        "--chat-template/--raw-prompts",
        help="Wrap plain-text prompts in the chat template (default raw, as training sees them).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the prompts drawn and the A/B order."),
    db: str = DbOpt,
    json_out: bool = JsonOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Answer new prompts with a project's models; import them as items.

    A revision or rating project gets one answer per prompt (by --model, the current base by
    default); a pairwise project two, --model against --model-b, with the models' names as the
    items' model_a and model_b (A and B drawn at random per item), so the crowd's votes rank the
    lineage on the model leaderboard. Prompts the same models answered in the project before
    are skipped (run it again for the next --n prompts).
    """
    from crowdtune.crowd.generated import generated_items, prompt_turns, single_turn
    from crowdtune.store import repository as repo
    from crowdtune.training.assess import held_out_prompts

    with store_session(db) as session:
        target = find_project(session, project)
        kind, project_id = target.kind, target.id
        first = lineage_model(session, project_id, model)
        second = None
        if kind == "pairwise":
            second = (
                previous_base(session, project_id)
                if model_b is None
                else lineage_model(session, project_id, model_b)
            )
        elif model_b is not None:
            fail(f"--model-b is for pairwise projects; {target.name!r} is a {kind} project")
        answered = repo.project_item_keys(session, project_id)
        session.commit()
    try:
        available, _ = held_out_prompts(prompts, None, seed)
    except (OSError, ValueError) as exc:
        fail(f"--prompts {prompts}: {exc}")
    # An item holds user turns and one answer: conversations with earlier answers do not fit.
    fitting = [prompt for prompt in available if single_turn(prompt)]
    if not fitting:
        fail(f"--prompts {prompts}: none of its {len(available)} prompts is a plain text or a "
             "user-only conversation")  # fmt: skip
    # A prompt these models answered in this project before would only repeat its item.
    models = frozenset(m.name for m in (first, second) if m is not None)
    fresh = [p for p in fitting if (tuple(prompt_turns(p)), models) not in answered]
    chosen = fresh[:n]
    if not chosen:
        fail(
            f"--prompts {prompts}: the project has items of {' and '.join(sorted(models))} "
            f"for all {len(fitting)} of its prompts; give other prompts or another --model"
        )
    skipped = len(fitting) - len(fresh)
    total = len(chosen) * (1 if second is None else 2)
    try:
        with progress_bar(total, "generating answers", progress) as advance:
            items = generated_items(
                chosen, kind, first, second, max_new_tokens=max_new_tokens,
                batch_size=batch_size, seed=seed, chat_template=chat_template, advance=advance,
            )  # fmt: skip
    except (OSError, ValueError) as exc:
        fail(str(exc))
    with store_session(db) as session:
        created = repo.add_items(session, project_id, items)
    summary = {
        "project_id": project_id,
        "kind": kind,
        "created": created,
        "model_a": first.name,
        "model_b": None if second is None else second.name,
        "prompts": prompts,
        "skipped": skipped,
    }
    if json_out:
        typer.echo(json.dumps(summary))
        return
    names = first.name if second is None else f"{first.name} vs {second.name}"
    note = f"; skipped {skipped} prompts these models answered before" if skipped else ""
    typer.echo(f"added {created} {kind} items to project {project_id} ({names}){note}")
