"""Honest failures: a database locked by another connection answers 503 with Retry-After
(API and pages, SQLite and PostgreSQL), and `crowdtune serve` refuses a database file that is
damaged or cannot be written, naming the file and the problem."""

import sqlite3
from contextlib import contextmanager

import psycopg
import pytest
from fastapi.testclient import TestClient

from crowdtune.server import create_app
from crowdtune.store import BusyError, make_engine
from crowdtune.store.db import is_busy
from test_server_api import people
from test_server_pages import ITEMS, csrf_of, sign_in

API = "/api/v1"
#: A short busy timeout, so a held lock turns into a 503 quickly.
BUSY_MS = 300


@contextmanager
def write_lock_held(url):
    """Another connection holds the database's write lock for the block: SQLite's (``BEGIN
    IMMEDIATE``), or on PostgreSQL exclusive locks on the tables a vote and an assignment
    touch."""
    if url.startswith("sqlite"):
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()
        return
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as other:
        other.execute("LOCK TABLE item, task, response IN ACCESS EXCLUSIVE MODE")
        yield
        other.rollback()


def check_busy_database_is_503(url):
    auth = people(url)
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    with TestClient(create_app(url, busy_timeout_ms=BUSY_MS)) as client:
        project = client.post(f"{API}/projects", json={"name": "p"}, headers=auth["root"])
        project = project.json()["id"]
        client.post(f"{API}/projects/{project}/items", json=ITEMS, headers=auth["root"])
        task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
        page = TestClient(client.app)
        sign_in(page, tokens["bob"])
        csrf = csrf_of(page.get(f"/projects/{project}/annotate").text)
        page_task = page.get(f"/projects/{project}/next", headers={"Accept": "application/json"})
        page_task = page_task.json()["task_id"]

        vote = f"{API}/tasks/{task['task_id']}/responses"
        page_vote = f"/projects/{project}/tasks/{page_task}/vote"
        json_page = {"X-CSRF-Token": csrf, "Accept": "application/json"}
        with write_lock_held(url):
            answers = {
                "API vote": client.post(vote, json={"verdict": "a"}, headers=auth["ann"]),
                "API assignment": client.get(
                    f"{API}/projects/{project}/tasks/next", headers=auth["root"]
                ),
                "page vote (JSON)": page.post(page_vote, json={"verdict": "b"}, headers=json_page),
                "page vote (form)": page.post(
                    page_vote, data={"verdict": "b", "csrf_token": csrf}, follow_redirects=False
                ),
            }
            for what, reply in answers.items():
                assert reply.status_code == 503, (what, reply.status_code, reply.text)
                assert int(reply.headers["Retry-After"]) >= 1, what
                assert "busy" in reply.text, (what, reply.text)
            assert answers["API vote"].json()["detail"].startswith("the database is busy")
            assert answers["page vote (JSON)"].json()["detail"].startswith("the database is busy")
            assert answers["page vote (form)"].headers["content-type"].startswith("text/html")
        # once the lock is gone the same requests succeed: nothing was half stored
        assert client.post(vote, json={"verdict": "a"}, headers=auth["ann"]).status_code == 201
        reply = page.post(page_vote, json={"verdict": "b"}, headers=json_page)
        assert reply.status_code == 201, reply.text


def test_a_lock_held_by_another_connection_is_503_on_sqlite(tmp_path):
    check_busy_database_is_503(f"sqlite:///{tmp_path / 'busy.db'}")


@pytest.mark.postgres
def test_a_lock_held_by_another_connection_is_503_on_postgresql(postgres_url):
    check_busy_database_is_503(postgres_url)


def test_busy_errors_of_both_drivers_are_recognised(tmp_path):
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5
    snapshot = sqlite3.OperationalError("database is locked")
    snapshot.sqlite_errorcode = 517  # SQLITE_BUSY_SNAPSHOT
    assert is_busy(locked) and is_busy(snapshot)
    other = sqlite3.OperationalError("no such table: x")
    other.sqlite_errorcode = 1
    assert not is_busy(other)
    assert is_busy(psycopg.errors.LockNotAvailable()) and is_busy(
        psycopg.errors.SerializationFailure()
    )
    assert not is_busy(psycopg.errors.UniqueViolation())
    # the in-process write lock that times out is the same error
    from crowdtune.store.db import write_lock

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=50)
    with write_lock(engine), pytest.raises(BusyError, match="busy"):
        with write_lock(engine):
            pass
    engine.dispose()
    with pytest.raises(ValueError, match="busy timeout"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=0)
