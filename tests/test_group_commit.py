"""Group commit (:class:`crowdtune.store.group_commit.GroupCommit`) on SQLite and PostgreSQL:
votes queued together commit in one transaction, a bad vote among them fails alone with its own
error, and a batch whose commit fails gives every waiting caller an error and stores nothing of
it (or, when the failure passes, is run again and stores each vote once). Through the API: a
failed commit is 503 with ``Retry-After``, and the same Idempotency-Key afterwards stores the
vote once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import OperationalError

from crowdtune.server import create_app
from crowdtune.store import ConflictError, ForbiddenError, make_engine, session_factory, upgrade
from crowdtune.store.group_commit import CommitFailedError, GroupCommit
from crowdtune.store.models import Item, Response, Task
from crowdtune.store.repository import (
    add_items,
    assign,
    create_contributor,
    create_project,
    record_answer,
    submission,
)
from test_server_api import people

API = "/api/v1"
VOTERS = 40


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def seed(engine: Engine, voters: int, overlap: int = 1) -> tuple[int, list[int]]:
    """A pairwise project of ``voters`` items and ``voters`` annotators' ids."""
    with session_factory(engine)() as session:
        ids = [create_contributor(session, f"ann{i}")[0].id for i in range(voters)]
        project = create_project(session, "p", overlap=overlap)
        rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(voters)]
        add_items(session, project.id, rows)
        return project.id, ids


@contextmanager
def paused(writer: GroupCommit) -> Iterator[None]:
    """The writer busy with a batch that waits until the block ends: what the block submits
    queues up and forms the next batch, whole."""
    go, started = threading.Event(), threading.Event()

    def hold(connection: Connection) -> None:
        started.set()
        go.wait(30)

    held = writer.submit(hold)
    assert started.wait(30)
    try:
        yield
    finally:
        go.set()
        held.result(30)


def responses(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(Response.idempotency_key, Response.task_id)))


def vote(task_id: int, contributor: int, key: str, verdict: str = "a") -> Any:
    sent = submission(verdict=verdict, idempotency_key=key)
    return lambda connection: record_answer(connection, task_id, contributor, sent)


def test_one_bad_vote_in_a_batch_fails_alone(engine):
    project, people_ids = seed(engine, VOTERS)
    writer = GroupCommit(engine)
    try:
        tasks = [
            writer.submit(lambda c, who=who: assign(c, project, who)).result(30)
            for who in people_ids
        ]
        before = writer.batches
        with paused(writer):
            futures: list[Future[Any]] = [
                writer.submit(vote(task.id, task.contributor_id, f"k{i}"))
                for i, task in enumerate(tasks)
            ]
            # Bad ones among them: someone else's task (403), a second answer to a task under
            # another key (409), an assignment of a project that does not exist (404).
            intruder = writer.submit(vote(tasks[0].id, tasks[1].contributor_id, "intruder"))
            twice = writer.submit(vote(tasks[2].id, tasks[2].contributor_id, "again", "b"))
            lost = writer.submit(lambda c: assign(c, project + 99, people_ids[0]))
        results = [future.result(30) for future in futures]
        assert writer.batches == before + 2, "the held batch, then all the queued votes at once"
        with pytest.raises(ForbiddenError, match="assigned to another contributor"):
            intruder.result(30)
        with pytest.raises(ConflictError, match="answered already"):
            twice.result(30)
        with pytest.raises(LookupError, match=f"no project with id {project + 99}"):
            lost.result(30)
    finally:
        writer.close()
    assert all(created for _, created in results)
    assert responses(engine) == sorted((f"k{i}", task.id) for i, task in enumerate(tasks))


class FailingCommits:
    """Make the next ``left`` commits of transactions that store a vote fail, as a full disk or
    a lost connection would, before anything is written."""

    def __init__(self, engine: Engine, left: int) -> None:
        self.left = left
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self.seen)
        event.listen(engine, "commit", self.fail)

    def seen(self, connection: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO response"):
            connection.info["votes"] = True

    def fail(self, connection: Connection) -> None:
        if connection.info.pop("votes", False) and self.left > 0:
            self.left -= 1
            raise OperationalError("COMMIT", {}, Exception("disk I/O error (injected)"))

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self.seen)
        event.remove(self.engine, "commit", self.fail)


def test_a_batch_whose_commit_fails_gives_every_caller_an_error_and_stores_nothing(engine):
    project, people_ids = seed(engine, VOTERS)
    writer = GroupCommit(engine, attempts=3)
    failing = FailingCommits(engine, 0)
    try:
        tasks = [
            writer.submit(lambda c, who=who: assign(c, project, who)).result(30)
            for who in people_ids
        ]
        failing.left = 3  # every attempt of the batch
        with paused(writer):
            queued = [
                writer.submit(vote(task.id, task.contributor_id, f"k{i}"))
                for i, task in enumerate(tasks)
            ]
        for future in queued:
            with pytest.raises(CommitFailedError, match="disk I/O error .injected.*not acknowl"):
                future.result(30)
        assert failing.left == 0
        assert responses(engine) == [], "nothing of the failed batch is stored"
        # One failed commit, then a good one: the batch runs again and each vote is stored once.
        failing.left = 1
        with paused(writer):
            again = [
                writer.submit(vote(task.id, task.contributor_id, f"k{i}"))
                for i, task in enumerate(tasks)
            ]
        assert all(future.result(30)[1] for future in again)
        assert failing.left == 0
    finally:
        failing.remove()
        writer.close()
    assert responses(engine) == sorted((f"k{i}", task.id) for i, task in enumerate(tasks))


def test_a_failed_commit_is_503_and_the_same_key_later_stores_the_vote_once(url):
    auth = people(url)
    with TestClient(create_app(url)) as client:
        project = client.post(f"{API}/projects", json={"name": "p"}, headers=auth["root"]).json()
        rows = [{"prompt": "q", "response_a": "a", "response_b": "b"}]
        client.post(f"{API}/projects/{project['id']}/items", json=rows, headers=auth["root"])
        task = client.get(f"{API}/projects/{project['id']}/tasks/next", headers=auth["ann"])
        writer: GroupCommit = client.app.state.writer  # type: ignore[attr-defined]
        failing = FailingCommits(writer.engine, writer.attempts)
        try:
            path = f"{API}/tasks/{task.json()['task_id']}/responses"
            headers = {**auth["ann"], "Idempotency-Key": "k"}
            reply = client.post(path, json={"verdict": "a"}, headers=headers)
            assert reply.status_code == 503, reply.text
            assert int(reply.headers["Retry-After"]) >= 1
            assert "not acknowledged" in reply.json()["detail"]
            assert responses(writer.engine) == []
            reply = client.post(path, json={"verdict": "a"}, headers=headers)
            assert reply.status_code == 201, reply.text
            reply = client.post(path, json={"verdict": "a"}, headers=headers)
            assert reply.status_code == 200 and reply.headers["Idempotent-Replayed"] == "true"
        finally:
            failing.remove()
        assert [key for key, _ in responses(writer.engine)] == ["k"]


def test_assignments_in_one_batch_keep_the_overlap(engine):
    """Many next-task requests of one batch on an overlap-3 project: each item goes to exactly
    three people, never twice to one, and the kept counts match the tasks."""
    project, people_ids = seed(engine, 12, overlap=3)
    writer = GroupCommit(engine)
    try:
        handed: list[Any] = []
        while True:
            with paused(writer):
                futures = [writer.submit(lambda c, w=w: assign(c, project, w)) for w in people_ids]
            got = [future.result(30) for future in futures]
            if all(task is None for task in got):
                break
            handed += [task for task in got if task is not None]
            with paused(writer):
                votes = [writer.submit(vote(t.id, t.contributor_id, f"k{t.id}")) for t in got if t]
            for future in votes:
                future.result(30)
    finally:
        writer.close()
    with engine.connect() as connection:
        per_item = dict(connection.execute(
            select(Task.item_id, func.count()).group_by(Task.item_id)).all())  # fmt: skip
        kept = dict(connection.execute(select(Item.id, Item.assigned)).all())
    assert set(per_item.values()) == {3} and len(per_item) == 12
    assert kept == per_item
    assert len({(t.item_id, t.contributor_id) for t in handed}) == len(handed) == 36
