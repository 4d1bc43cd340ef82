"""The ``round`` job: one Crowd-SFT round on what a project collected, run in the worker.

The job's payload is the API's request (:class:`crowdtune.server.schemas.RoundIn`):

- ``candidate="sft"`` (revision projects): each group's revisions fine-tune a candidate from the
  project's base model, scored by the NLL of the gold items' reference revisions
  (:func:`crowdtune.crowd.feedback.lm_round.run_model_round`);
- ``candidate="dpo"`` (pairwise projects): each group's votes train a candidate by DPO, scored by
  the accuracy of its implicit reward on the gold votes;
- ``candidate="preference"`` (pairwise projects): each group's votes train a preference model,
  scored by its gold log loss (:func:`crowdtune.crowd.feedback.round.run_feedback_round`).

The handler reads everything first and ends the read transaction, computes the round (minutes
to hours, reporting every training step), and stores the round, its candidates and the job's
end in one transaction (:func:`crowdtune.store.repository.record_job_round`). Candidates are
written under ``<models_dir>/project-<id>/round-<n>-job-<job>-attempt-<k>``: a retried job
writes a fresh folder, and the folder of an attempt that died is never referred to.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from crowdtune.crowd.feedback.lm_round import ModelRoundSettings, run_model_round
from crowdtune.crowd.feedback.round import (
    CurrentModel,
    RoundSettings,
    accumulated_points,
    run_feedback_round,
)
from crowdtune.records import comparisons_frame, revisions_frame
from crowdtune.store import repository as repo
from crowdtune.worker.loop import JobContext

#: What each kind of candidate needs of the project.
CANDIDATE_KINDS = {"sft": "revision", "dpo": "pairwise", "preference": "pairwise"}


def round_folder(context: JobContext, round_number: int, attempt: int | None = None) -> Path:
    """Where an attempt of the job (default: this one) writes its round's models."""
    attempt = context.attempt if attempt is None else attempt
    project = context.models_dir / f"project-{context.project_id}"
    return project / f"round-{round_number}-job-{context.job_id}-attempt-{attempt}"


def _forget_dead_attempts(context: JobContext, round_number: int) -> None:
    """Remove what earlier attempts of this job wrote (their worker died mid-round)."""
    for attempt in range(1, context.attempt):
        shutil.rmtree(round_folder(context, round_number, attempt), ignore_errors=True)


def run_round_job(context: JobContext) -> None:
    """The handler of ``round`` jobs (see the module docstring)."""
    payload = dict(context.payload)
    candidate = payload.pop("candidate", "preference")
    project_id = context.project_id
    if project_id is None:
        raise ValueError("a round job needs a project")
    context.report(0.0, "reading the project's feedback")
    with context.sessions() as session:
        project = repo.get_project(session, project_id)
        needed = CANDIDATE_KINDS[candidate]
        if project.kind != needed:
            raise ValueError(
                f"{candidate} rounds need a {needed} project; project {project_id} is a "
                f"{project.kind} project"
            )
        rounds = [stored.details for stored in repo.project_rounds(session, project_id)]
        if candidate == "preference":
            votes = repo.project_comparisons(session, project_id)
            gold = repo.project_gold_items(session, project_id)
        elif candidate == "sft":
            feedback = revisions_frame(repo.project_revisions(session, project_id))
            references = [g for g in repo.project_single_gold(session, project_id) if g.reference]
            gold_frame = pd.DataFrame(
                {
                    "prompt": [g.prompt for g in references],
                    "original": [g.response for g in references],
                    "reference": [g.reference for g in references],
                }
            )
        else:
            feedback = comparisons_frame(repo.project_comparisons(session, project_id))
            gold_frame = comparisons_frame(repo.project_gold_items(session, project_id))
        base_name, base_path = repo.project_base_model(session, project_id)
        session.rollback()  # no snapshot is held while the round computes

    after = len(rounds)
    points = accumulated_points(rounds)
    if candidate == "preference":
        result = run_feedback_round(
            votes,
            gold,
            points=points,
            settings=RoundSettings(**payload),
            current=CurrentModel.after(rounds[-1]) if rounds else None,
            round_index=after,
        )
        _store(
            context, project_id, after, candidate=candidate,
            strategy=result.settings.strategy, scheme=result.settings.scheme,
            winner=f"group {result.winner}", details={"candidate": candidate, **result.to_dict()},
        )  # fmt: skip
        return

    _forget_dead_attempts(context, after + 1)
    settings = ModelRoundSettings(candidate=candidate, **payload)
    lm_history = [details for details in rounds if details.get("candidate") in ("sft", "dpo")]
    outcome = run_model_round(
        feedback,
        gold_frame,
        base=base_path,
        out=round_folder(context, after + 1),
        settings=settings,
        round_index=after,
        points=points,
        history=lm_history,
        progress=context.report,
    )
    details: dict[str, Any] = {"candidate": candidate, **outcome.to_dict(), "base_name": base_name}
    details["round_number"] = after + 1
    models = []
    new_base = None
    for entry in details["candidates"]:
        if entry.get("path") is None:
            continue
        name = f"round-{after + 1}-group-{entry['group']}"
        winner = entry["group"] == details["winner"]
        entry["name"] = name
        models.append(
            {
                "name": name,
                "path": entry["path"],
                "group": entry["group"],
                "parent": base_name,
                "winner": winner,
                "evaluation": entry.get("evaluation"),
            }
        )
        if winner and details["improved"]:
            new_base = name
    details["base_after"] = new_base or base_name
    _store(
        context, project_id, after, candidate=candidate, strategy=settings.strategy,
        scheme=settings.scheme,
        winner=None if details["winner"] is None else f"group {details['winner']}",
        details=details, models=models, base_evaluation=details.get("base_evaluation"),
        new_base=new_base,
    )  # fmt: skip


def _store(context: JobContext, project_id: int, after: int, **fields: Any) -> None:
    """Store the round with the job's end, unless the job was cancelled meanwhile (then
    :class:`~crowdtune.worker.loop.JobCancelled` is raised and nothing is stored)."""
    context.check()
    with context.sessions() as session:
        repo.record_job_round(
            session, project_id, job_id=context.job_id, worker=context.worker, after=after,
            **fields,
        )  # fmt: skip
