"""A project's model lineage and the one transaction that stores a round a job computed.

The lineage (:class:`~crowdtune.store.models.ModelVersion` rows) starts with the project's
``base_model`` and grows by every candidate of every round of language models; one row is the
base (``is_base``). :func:`record_job_round` stores a round, its models, the base switch and
the job's end together, so a worker killed at any moment leaves either all of it or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crowdtune.store.errors import ConflictError
from crowdtune.store.models import ModelVersion, Round
from crowdtune.store.repository.jobs import finish_job
from crowdtune.store.repository.reads import get_project
from crowdtune.store.repository.writes import MAX_LABEL, add_round, check_name, writing


def project_models(session: Session, project_id: int) -> list[ModelVersion]:
    """The project's lineage, oldest first (empty before its first round of language models).

    Raises
    ------
    NotFoundError
        No such project.
    """
    get_project(session, project_id)
    query = select(ModelVersion).where(ModelVersion.project_id == project_id)
    return list(session.scalars(query.order_by(ModelVersion.id)))


def project_base_model(session: Session, project_id: int) -> tuple[str, str]:
    """``(name, path)`` of the model the project's next round starts from and its new items
    are answered by: the lineage's base, else the project's ``base_model``.

    Raises
    ------
    NotFoundError
        No such project.
    """
    project = get_project(session, project_id)
    base = session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.is_base.is_(True)
        )
    )
    if base is None:
        return project.base_model, project.base_model
    return base.name, base.path


def record_job_round(
    session: Session,
    project_id: int,
    *,
    job_id: int,
    worker: str,
    candidate: str,
    strategy: str,
    scheme: str,
    winner: str | None,
    details: Mapping[str, Any],
    after: int,
    models: Sequence[Mapping[str, Any]] = (),
    base_evaluation: Mapping[str, Any] | None = None,
    new_base: str | None = None,
) -> Round:
    """Store a round a job computed, its models and the job's success, in one transaction.
    Commits.

    Parameters
    ----------
    details
        The round as the API shows it (JSON-ready).
    after
        How many rounds the project had when the job started.
    models
        The round's candidates: ``name``, ``path``, ``group``, ``evaluation``, ``winner``,
        ``parent``.
    base_evaluation
        How the model the round started from did on the same evaluation; stored on the
        lineage's first row (the project's ``base_model``) when the round creates it.
    new_base
        The name of the candidate that becomes the base (the winner, if it beat the base).

    Raises
    ------
    ConflictError
        The job is no longer this worker's (its heartbeat lapsed and it was requeued), another
        round was stored since the job started, or the job stored its round already.
    """
    with writing(session):
        project = get_project(session, project_id, lock=True)
        if session.scalar(select(Round.id).where(Round.job_id == job_id)) is not None:
            raise ConflictError(f"job {job_id} stored its round already")
        stored = add_round(
            session, project_id, strategy=strategy, scheme=scheme, winner=winner,
            details=details, after=after, ran=f"job {job_id}", candidate=candidate,
            job_id=job_id,
        )  # fmt: skip
        if models:
            has_lineage = session.scalar(
                select(func.count(ModelVersion.id)).where(ModelVersion.project_id == project_id)
            )
            if not has_lineage:
                session.add(
                    ModelVersion(
                        project_id=project_id,
                        name=project.base_model[:MAX_LABEL],
                        path=project.base_model,
                        is_base=True,
                        evaluation=None if base_evaluation is None else dict(base_evaluation),
                    )
                )
            for model in models:
                session.add(
                    ModelVersion(
                        project_id=project_id,
                        name=check_name(str(model["name"]), "model name", MAX_LABEL),
                        round_id=stored.id,
                        round_number=after + 1,
                        group=model.get("group"),
                        parent=model.get("parent"),
                        path=str(model["path"]),
                        winner=bool(model.get("winner", False)),
                        evaluation=model.get("evaluation"),
                    )
                )
            session.flush()
            if new_base is not None:
                in_project = ModelVersion.project_id == project_id
                session.execute(update(ModelVersion).where(in_project).values(is_base=False))
                switched = session.execute(
                    update(ModelVersion)
                    .where(in_project, ModelVersion.name == new_base)
                    .values(is_base=True)
                )
                if not switched.rowcount:  # type: ignore[attr-defined]
                    raise ValueError(f"new_base {new_base!r} is none of the round's models")
        result = {"round_id": stored.id, "round": after + 1, "winner": stored.winner}
        if not finish_job(session, job_id, worker, "succeeded", result=result, commit=False):
            session.rollback()
            raise ConflictError(
                f"job {job_id} is no longer worker {worker}'s (its heartbeat lapsed); "
                "its round is not stored"
            )
        session.commit()
    return stored
