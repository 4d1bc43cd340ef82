"""``crowdtune serve --workers 2``: two real server processes on one database, SQLite (their
writes queue on the lock file beside it) and PostgreSQL. Annotators ask for tasks and vote
concurrently until nothing is left; afterwards every item has exactly ``overlap`` tasks and
answers, none went twice to one person, the kept counts match, and both processes served."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crowdtune.cli import app as cli
from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import Item, Response, Task
from crowdtune.store.repository import add_items, create_contributor, create_project

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="server_reliability")]

API = "/api/v1"
OVERLAP = 3
ITEMS = 120
ANNOTATORS = 12


def seed(url: str) -> tuple[int, list[str]]:
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = [create_contributor(session, f"ann{i}")[1] for i in range(ANNOTATORS)]
            project = create_project(session, "k", overlap=OVERLAP)
            rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(ITEMS)]
            add_items(session, project.id, rows)
            return project.id, tokens
    finally:
        engine.dispose()


async def annotate_all(base: str, project_id: int, token: str) -> int:
    """Ask and vote until the server says nothing is left (204); the number of votes."""
    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    # One connection per request: the kernel spreads them over both processes.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as client:
        while True:
            async with client.get(f"{API}/projects/{project_id}/tasks/next") as reply:
                if reply.status == 204:
                    return done
                assert reply.status == 200, await reply.text()
                task = (await reply.json())["task_id"]
            path, key = f"{API}/tasks/{task}/responses", uuid.uuid4().hex
            async with client.post(
                path, json={"verdict": "a"}, headers={"Idempotency-Key": key}
            ) as reply:
                assert reply.status == 201, await reply.text()
            done += 1


def check_exactly_k(url: str, project_id: int) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tasks = connection.execute(
                select(Task.item_id, Task.contributor_id, Task.answered)
                .join(Item, Task.item_id == Item.id)
                .where(Item.project_id == project_id)
            ).all()
            kept = dict(connection.execute(select(Item.id, Item.assigned)).all())
            answers = connection.scalar(select(func.count(Response.id)))
    finally:
        engine.dispose()
    per_item = Counter(item for item, _, _ in tasks)
    assert len(per_item) == ITEMS and set(per_item.values()) == {OVERLAP}
    assert len({(item, who) for item, who, _ in tasks}) == len(tasks), "an item went twice"
    assert all(answered for _, _, answered in tasks)
    assert answers == ITEMS * OVERLAP
    assert kept == dict(per_item)


def run_two_processes(url: str, log: Path) -> None:
    project_id, tokens = seed(url)
    port = free_port()
    server = start_server(url, port, log=log, options=["--workers", "2"])
    try:

        async def everyone() -> list[int]:
            base = f"http://127.0.0.1:{port}"
            return await asyncio.gather(*(annotate_all(base, project_id, t) for t in tokens))

        votes = asyncio.run(everyone())
    finally:
        stop_server(server)
    assert sum(votes) == ITEMS * OVERLAP
    check_exactly_k(url, project_id)
    started = set(re.findall(r"Started server process \[(\d+)\]", log.read_text()))
    assert len(started) == 2, log.read_text()[-2000:]


def test_two_processes_on_sqlite_assign_exactly_k(tmp_path):
    run_two_processes(f"sqlite:///{tmp_path / 'two.db'}", tmp_path / "server.log")
    assert (tmp_path / "two.db.lock").exists(), "the processes' write lock beside the database"


@pytest.mark.postgres
def test_two_processes_on_postgresql_assign_exactly_k(postgres_url, tmp_path):
    run_two_processes(postgres_url, tmp_path / "server.log")


def test_workers_refuse_an_in_memory_database():
    result = CliRunner().invoke(cli, ["serve", "--db", "sqlite://", "--workers", "2"])
    assert result.exit_code == 2, result.output
    said = re.sub(r"[\s│─╭╮╰╯]+", " ", result.output)  # the text of rich's error box
    assert "in-memory SQLite database lives in one process" in said, said
