"""Honest failures: a database locked by another connection answers 503 with Retry-After
(API and pages, SQLite and PostgreSQL), and `crowdtune serve` refuses a database file that is
damaged or cannot be written, naming the file and the problem."""

import sqlite3
from contextlib import contextmanager

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crowdtune.cli import app as cli
from crowdtune.server import create_app
from crowdtune.store import BusyError, make_engine, session_factory, upgrade
from crowdtune.store.db import check_database, is_busy
from crowdtune.store.errors import UnusableDatabaseError
from crowdtune.store.repository import add_items, create_project
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


# ---------------------------------------------------------------------------------------------
# crowdtune serve refuses a database it cannot serve


def filled_sqlite(path):
    """A migrated SQLite file with enough rows to span many pages, checkpointed (no WAL)."""
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        project = create_project(session, "p")
        items = [{"prompt": f"q{i} " + "x" * 400, "response_a": "a", "response_b": "b"}
                 for i in range(300)]  # fmt: skip
        add_items(session, project.id, items)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return url


@pytest.fixture
def no_uvicorn(monkeypatch):
    """uvicorn.run records that the server would have started, instead of serving."""
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.append(kwargs))
    return started


def serve(url):
    return CliRunner().invoke(cli, ["serve", "--db", url])


@pytest.mark.parametrize(
    ("first_page", "problem"),
    [(4, "database disk image is malformed"), (30, "is damaged")],
    ids=["schema pages", "data pages"],
)
def test_serve_refuses_a_damaged_sqlite_file_naming_it(tmp_path, no_uvicorn, first_page, problem):
    path = tmp_path / "damaged.db"
    filled_sqlite(path)
    with path.open("r+b") as file:  # the 100-byte header stays intact, four pages do not
        header = file.read(100)
        file.seek(4096 * (first_page - 1))
        file.write(b"\xa5" * 4096 * 4)
    assert path.read_bytes()[:100] == header and header.startswith(b"SQLite format 3\0")
    with pytest.raises(UnusableDatabaseError, match=problem):
        check_database(f"sqlite:///{path}")
    result = serve(f"sqlite:///{path}")
    assert result.exit_code == 2, result.output
    assert f"SQLite file {path}" in result.output.replace("\n", "") and problem in result.output
    assert "restore it from a backup" in result.output
    assert no_uvicorn == []


def test_serve_refuses_a_read_only_sqlite_file(tmp_path, no_uvicorn):
    path = tmp_path / "frozen.db"
    filled_sqlite(path)
    path.chmod(0o444)  # read-only for anyone but root; the URL opens it read-only for root too
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(UnusableDatabaseError, match="cannot be written: attempt to write a read"):
        check_database(url)
    result = serve(url)
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "cannot be written" in result.output
    assert no_uvicorn == []
    assert "crowdtune_write_check" not in path.read_bytes().decode("latin-1")


def test_serve_refuses_a_file_that_is_no_database(tmp_path, no_uvicorn):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    result = serve(f"sqlite:///{path}")
    assert result.exit_code == 2 and "not a database" in result.output, result.output
    assert no_uvicorn == []


def test_a_sound_database_passes_the_check_and_keeps_nothing_of_it(tmp_path, no_uvicorn):
    url = filled_sqlite(tmp_path / "sound.db")
    check_database(url)
    check_database(f"sqlite:///{tmp_path / 'new.db'}")  # a new file is created, then migrated
    result = serve(url)
    assert result.exit_code == 0, result.output
    assert len(no_uvicorn) == 1
    engine = make_engine(url)
    with engine.connect() as connection:
        tables = connection.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
    engine.dispose()
    assert "crowdtune_write_check" not in tables


@pytest.mark.postgres
def test_postgresql_is_checked_for_connection_and_writes(postgres_url):
    check_database(postgres_url)
    upgrade(postgres_url)
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as admin:
        admin.autocommit = True
        name = admin.info.dbname
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with pytest.raises(UnusableDatabaseError, match="cannot be written: .*read-only"):
        check_database(postgres_url)
    missing = postgres_url.rsplit("/", 1)[0] + "/crowdtune_no_such_database"
    with pytest.raises(UnusableDatabaseError, match="crowdtune_no_such_database cannot be opened"):
        check_database(missing)
