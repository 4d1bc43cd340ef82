"""The job queue and the lineage transaction of the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdtune.store import ConflictError, make_engine, session_factory, upgrade
from crowdtune.store import repository as repo
from crowdtune.store.models import Job


@pytest.fixture
def Session(url):  # noqa: N802 (a session factory, named like the class it makes)
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def test_jobs_are_claimed_oldest_first_once_each(Session):
    with Session() as session:
        first = repo.enqueue_job(session, "round", {"n": 1})
        second = repo.enqueue_job(session, "round", {"n": 2})
        assert repo.claim_job(session, "w1").id == first.id
        assert repo.claim_job(session, "w2").id == second.id
        assert repo.claim_job(session, "w3") is None
        job = repo.get_job(session, first.id)
        assert (job.state, job.worker, job.attempts) == ("running", "w1", 1)


@pytest.mark.postgres
def test_postgres_workers_skip_a_job_another_holds_locked(postgres_url):
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    Session = session_factory(engine)  # noqa: N806
    with Session() as holder, Session() as other:
        first = repo.enqueue_job(holder, "round", {})
        second = repo.enqueue_job(holder, "round", {})
        # The holder locks the oldest job in an open transaction, as a claim in progress does.
        holder.scalar(select(Job).where(Job.id == first.id).with_for_update())
        assert repo.claim_job(other, "w2").id == second.id  # no wait on the locked row
        holder.rollback()
    engine.dispose()


def test_beat_reports_progress_cancel_and_loss(Session):
    with Session() as session:
        job = repo.enqueue_job(session, "round", {})
        repo.claim_job(session, "w")
        assert repo.beat(session, job.id, "w", progress=0.5, message="half") == repo.BEAT_OK
        assert repo.get_job(session, job.id).progress == 0.5
        assert repo.request_cancel(session, job.id).cancel_requested
        assert repo.beat(session, job.id, "w") == repo.BEAT_CANCEL
        assert repo.beat(session, job.id, "somebody else") == repo.BEAT_LOST
        assert repo.finish_job(session, job.id, "w", "cancelled")
        assert repo.get_job(session, job.id).state == "cancelled"
        assert not repo.finish_job(session, job.id, "w", "succeeded")  # over already


def test_cancelling_a_queued_job_ends_it_at_once(Session):
    with Session() as session:
        job = repo.enqueue_job(session, "round", {})
        assert repo.request_cancel(session, job.id).state == "cancelled"
        assert repo.claim_job(session, "w") is None


def test_a_lapsed_job_is_retried_then_failed(Session):
    with Session() as session:
        job = repo.enqueue_job(session, "round", {}, max_attempts=2)
        repo.claim_job(session, "dead-1")
        assert repo.requeue_lapsed(session, timedelta(hours=1)) == []  # still beating
        assert repo.requeue_lapsed(session, timedelta(0)) == [repo.Lapsed(job.id, "queued")]
        assert repo.beat(session, job.id, "dead-1") == repo.BEAT_LOST
        assert repo.claim_job(session, "dead-2").attempts == 2
        assert repo.requeue_lapsed(session, timedelta(0)) == [repo.Lapsed(job.id, "failed")]
        job = repo.get_job(session, job.id)
        assert job.state == "failed" and "stopped beating" in job.message


def test_a_round_its_models_and_the_job_end_are_stored_together(Session):
    with Session() as session:
        project = repo.create_project(session, "p", kind="revision", base_model="tiny")
        assert repo.project_base_model(session, project.id) == ("tiny", "tiny")
        job = repo.enqueue_job(session, "round", {}, project_id=project.id)
        repo.claim_job(session, "w")
        models = [
            {"name": "round-1-group-1", "path": "/m/1", "group": 1, "parent": "tiny",
             "winner": True, "evaluation": {"value": 1.0}},
            {"name": "round-1-group-2", "path": "/m/2", "group": 2, "parent": "tiny",
             "evaluation": {"value": 2.0}},
        ]  # fmt: skip
        settings = {"strategy": "random", "scheme": "rank", "details": {"x": 1}}
        # A worker that lost the job stores nothing.
        with pytest.raises(ConflictError, match="no longer"):
            repo.record_job_round(
                session, project.id, job_id=job.id, worker="other", candidate="sft",
                winner="group 1", after=0, models=models, new_base="round-1-group-1", **settings,
            )  # fmt: skip
        assert repo.project_rounds(session, project.id) == []
        assert repo.project_models(session, project.id) == []
        stored = repo.record_job_round(
            session, project.id, job_id=job.id, worker="w", candidate="sft", winner="group 1",
            after=0, models=models, new_base="round-1-group-1",
            base_evaluation={"value": 3.0}, **settings,
        )  # fmt: skip
        lineage = repo.project_models(session, project.id)
        assert [(m.name, m.is_base, m.round_number) for m in lineage] == [
            ("tiny", False, None),
            ("round-1-group-1", True, 1),
            ("round-1-group-2", False, 1),
        ]
        assert lineage[0].evaluation == {"value": 3.0}
        assert repo.project_base_model(session, project.id) == ("round-1-group-1", "/m/1")
        job = repo.get_job(session, job.id)
        assert job.state == "succeeded" and job.result["round_id"] == stored.id
        # The same job cannot store a second round.
        with pytest.raises(ConflictError, match="already"):
            repo.record_job_round(
                session, project.id, job_id=job.id, worker="w", candidate="sft",
                winner=None, after=1, **settings,
            )  # fmt: skip
