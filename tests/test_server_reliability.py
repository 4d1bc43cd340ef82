"""The feedback API under load, through a real ``crowdtune serve`` subprocess on SQLite.

Many concurrent clients vote (GET tasks/next, then POST with a unique Idempotency-Key, retried
with the same key after a connection error); afterwards the database itself is checked: every
acknowledged vote is stored exactly once, no task has two votes, no item exceeds its overlap.
One run SIGKILLs the server (all its processes) half-way and restarts it on the same file;
nothing acknowledged before the kill may be missing. Both load tests run on one server process
and on two (``--workers 2``, writing through the lock file beside the database). Malformed votes
get 422 naming the field and store nothing.

Each load test submits :data:`VOTES` votes from :data:`CLIENTS` clients (20,000 and 50, as the
issue asks; tens of seconds each with group commit, see ``benchmarks/bench_server.py``).
``CROWDTUNE_RELIABILITY_VOTES=2000`` makes a quick run. The clients use aiohttp: httpx's async
client tops out near 700 requests/s here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter

import aiohttp
import httpx
import pytest
from sqlalchemy import func, select

from crowdtune.server.process import free_port, kill_server, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import Item, Response, Task
from crowdtune.store.repository import add_items, create_contributor, create_project

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="server_reliability")]

API = "/api/v1"
#: Votes one run submits (the issue asks for 20,000).
VOTES = int(os.environ.get("CROWDTUNE_RELIABILITY_VOTES", "20000"))
CLIENTS = 50
#: How long a client keeps retrying a request that fails on the connection.
RETRY_SECONDS = 60.0


def seed(url: str, annotators: int, items: int) -> tuple[int, list[str], str]:
    """A project with overlap 1 and ``items`` items; annotator tokens and an admin token."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            _, admin = create_contributor(session, "root", "admin")
            tokens = [create_contributor(session, f"ann{i}")[1] for i in range(annotators)]
            project = create_project(session, "load", overlap=1)
            add_items(
                session,
                project.id,
                [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(items)],
            )
            return project.id, tokens, admin
    finally:
        engine.dispose()


class Votes:
    """Acknowledged idempotency keys (201 or 200) with their task ids, across all clients."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, int] = {}
        self.retries = 0


async def retried(
    client: aiohttp.ClientSession, votes: Votes, method: str, path: str, **kwargs: object
) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the request, repeated unchanged (same Idempotency-Key) while the
    connection fails."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            async with client.request(method, path, **kwargs) as reply:  # type: ignore[arg-type]
                return reply.status, await reply.json()
        # A server killed while it sends a reply cuts its body short: ClientPayloadError, not a
        # connection error; the client retries it the same way (the key makes it safe).
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            votes.retries += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def annotator(base: str, project_id: int, token: str, count: int, votes: Votes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as client:
        for _ in range(count):
            status, body = await retried(
                client, votes, "GET", f"{API}/projects/{project_id}/tasks/next"
            )
            assert status == 200, body
            task_id = body["task_id"]
            key = uuid.uuid4().hex
            status, body = await retried(
                client, votes, "POST", f"{API}/tasks/{task_id}/responses",
                json={"verdict": "a"}, headers={"Idempotency-Key": key},
            )  # fmt: skip
            assert status in (200, 201), body
            assert body["task_id"] == task_id
            votes.acknowledged[key] = task_id  # type: ignore[assignment]


def clients(base: str, project_id: int, tokens: list[str], votes: Votes) -> list[asyncio.Task]:
    share, extra = divmod(VOTES, len(tokens))
    return [
        asyncio.ensure_future(annotator(base, project_id, token, share + (i < extra), votes))
        for i, token in enumerate(tokens)
    ]


def stored(url: str, project_id: int) -> list[tuple[str, int, int]]:
    """(idempotency key, task id, item id) of every stored response of the project."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [
                tuple(row)  # type: ignore[misc]
                for row in connection.execute(
                    select(Response.idempotency_key, Response.task_id, Task.item_id)
                    .join(Task, Response.task_id == Task.id)
                    .join(Item, Task.item_id == Item.id)
                    .where(Item.project_id == project_id)
                )
            ]
    finally:
        engine.dispose()


def check_exactly_once(url: str, project_id: int, votes: Votes) -> None:
    rows = stored(url, project_id)
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys)), "an idempotency key is stored twice"
    assert set(keys) == set(votes.acknowledged), (
        f"missing: {len(set(votes.acknowledged) - set(keys))}, "
        f"unacknowledged but stored: {len(set(keys) - set(votes.acknowledged))}"
    )
    assert len(rows) == len(votes.acknowledged) == VOTES
    assert max(Counter(task for _, task, _ in rows).values()) == 1, "a task has two votes"
    assert max(Counter(item for _, _, item in rows).values()) == 1, "an item is over its overlap"
    for key, task_id, _ in rows:
        assert votes.acknowledged[key] == task_id


#: Server processes of the load tests (``crowdtune serve --workers``).
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["1-process", "2-processes"])


@WORKERS
def test_concurrent_votes_are_stored_exactly_once(tmp_path, workers):
    url = f"sqlite:///{tmp_path / 'load.db'}"
    project_id, tokens, _ = seed(url, CLIENTS, VOTES)
    port = free_port()
    options = ["--workers", str(workers)]
    server = start_server(url, port, log=tmp_path / "server.log", options=options)
    votes = Votes()
    try:

        async def run() -> None:
            await asyncio.gather(*clients(f"http://127.0.0.1:{port}", project_id, tokens, votes))

        asyncio.run(run())
    finally:
        stop_server(server)
    check_exactly_once(url, project_id, votes)


@WORKERS
def test_votes_survive_a_killed_server(tmp_path, workers):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    project_id, tokens, _ = seed(url, CLIENTS, VOTES)
    port = free_port()
    log = tmp_path / "server.log"
    options = ["--workers", str(workers)]
    servers = [start_server(url, port, log=log, options=options)]
    votes = Votes()
    before_kill: set[str] = set()

    async def run() -> None:
        running = clients(f"http://127.0.0.1:{port}", project_id, tokens, votes)
        while len(votes.acknowledged) < VOTES // 2:
            failed = [task for task in running if task.done() and task.exception()]
            assert not failed, failed[0].exception()
            await asyncio.sleep(0.05)
        await asyncio.to_thread(kill_server, servers[0])
        before_kill.update(votes.acknowledged)
        # The server is dead: what it acknowledged must be in the file already.
        on_disk = {key for key, _, _ in await asyncio.to_thread(stored, url, project_id)}
        assert before_kill <= on_disk, f"{len(before_kill - on_disk)} acknowledged votes lost"
        await asyncio.sleep(0.5)  # clients hit a dead port and retry
        servers.append(await asyncio.to_thread(start_server, url, port, log=log, options=options))
        await asyncio.gather(*running)

    try:
        asyncio.run(run())
    finally:
        for server in servers:
            stop_server(server)
    assert servers[0].returncode == -signal.SIGKILL
    assert 0 < len(before_kill) < VOTES
    assert votes.retries > 0, "no client saw the server go away"
    assert before_kill <= {key for key, _, _ in stored(url, project_id)}
    check_exactly_once(url, project_id, votes)


def test_malformed_votes_get_422_naming_the_field(tmp_path):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    project_id, tokens, admin = seed(url, 1, 3)
    port = free_port()
    server = start_server(url, port, log=tmp_path / "server.log")
    me = {"Authorization": f"Bearer {tokens[0]}"}
    root = {"Authorization": f"Bearer {admin}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            task_id = client.get(f"{API}/projects/{project_id}/tasks/next", headers=me).json()[
                "task_id"
            ]
            vote = f"{API}/tasks/{task_id}/responses"
            cases = [
                ("verdict", {"verdict": "maybe"}, {}),
                ("verdict", {}, {}),
                ("seconds", {"verdict": "a", "seconds": -1}, {}),
                ("seconds", {"verdict": "a", "seconds": "soon"}, {}),
                ("reason", {"verdict": "a", "reason": "x" * 10_001}, {}),
                ("colour", {"verdict": "a", "colour": "red"}, {}),
                ("Idempotency-Key", {"verdict": "a"}, {"Idempotency-Key": "k" * 201}),
            ]
            for field, body, extra in cases:
                reply = client.post(vote, json=body, headers={**me, **extra})
                assert reply.status_code == 422, (field, reply.text)
                # Named where it is wrong, or (no answer at all) in what the body must hold.
                assert any(field in error["loc"] or field in error["msg"]
                           for error in reply.json()["detail"]), (field, reply.text)  # fmt: skip
            reply = client.post(vote, content=b"{not json", headers={
                **me, "Content-Type": "application/json"})  # fmt: skip
            assert reply.status_code == 422 and reply.json()["detail"][0]["type"] == "json_invalid"
            reply = client.post(f"{API}/projects", json={"name": "p2", "overlap": 0}, headers=root)
            assert reply.status_code == 422 and "overlap" in reply.json()["detail"][0]["loc"]
            reply = client.post(
                f"{API}/projects/{project_id}/items",
                json=[{"prompt": "q", "response_a": "a"}], headers=root,
            )  # fmt: skip
            assert reply.status_code == 422 and "response_b" in reply.json()["detail"][0]["loc"]
            # Nothing malformed was stored; the task still takes a good vote.
            assert stored(url, project_id) == []
            reply = client.post(
                vote, json={"verdict": "b"}, headers={**me, "Idempotency-Key": "ok"}
            )
            assert reply.status_code == 201, reply.text
    finally:
        stop_server(server)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count(Response.id))) == 1
            assert connection.scalar(select(func.count(Item.id))) == 3
    finally:
        engine.dispose()
