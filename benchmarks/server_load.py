"""The parts of ``bench_server.py``: a project to vote on, the load generator, the raw insert
ceiling of a database, and the count of lost and duplicated votes in the database.

The load generator (:func:`generate_load`) is a plain function of picklable arguments, so the
benchmark runs it in a process of its own (client and server then share the machine's cores as
two processes, not one event loop). Its clients use aiohttp: httpx's async client tops out near
700 requests/s on 2 cores, below the server it would measure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import psycopg
from sqlalchemy import Connection, func, insert, select

from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import Item, Response, Task
from crowdtune.store.repository import add_items, create_contributor, create_project

try:  # the event loop uvicorn uses too, where installed: the client then costs less CPU
    from uvloop import run as run_loop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    from asyncio import run as run_loop

API = "/api/v1"
#: How many error replies a load keeps verbatim, to be printed.
KEPT_MESSAGES = 5


def seed(url: str, annotators: int, items: int, overlap: int = 1) -> tuple[int, list[str]]:
    """A pairwise project with ``items`` items and ``overlap``, and ``annotators`` tokens."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = [
                create_contributor(session, f"bench-{uuid.uuid4().hex[:8]}-{i}", "annotator")[1]
                for i in range(annotators)
            ]
            project = create_project(session, f"bench-{uuid.uuid4().hex}", overlap=overlap)
            add_items(
                session,
                project.id,
                [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(items)],
            )
            return project.id, tokens
    finally:
        engine.dispose()


@dataclass
class Load:
    """What the clients of one run saw.

    ``acknowledged`` maps the Idempotency-Key of every vote the server acknowledged (201 or 200
    with a ``response_id``) to its task id; ``errors`` counts the other replies by request and
    status (``"POST 503"``) or exception; ``seconds`` is the wall time from the first request
    to the last reply, ``cpu_seconds`` the load generator's own CPU time in it.
    """

    acknowledged: dict[str, int] = field(default_factory=dict)
    post_seconds: list[float] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.messages) < KEPT_MESSAGES:
            self.messages.append(f"{what}: {detail[:300]}")


async def _annotator(base: str, project_id: int, token: str, votes: int, load: Load) -> None:
    """``votes`` cycles of GET the next task, POST a vote on it with a fresh Idempotency-Key.
    A failed request is counted and the cycle given up (the next GET returns the open task)."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as client:
        for _ in range(votes):
            start = time.perf_counter()
            try:
                async with client.get(f"{API}/projects/{project_id}/tasks/next") as reply:
                    if reply.status != 200:
                        load.error(f"GET {reply.status}", await reply.text())
                        if reply.status == 204:
                            return
                        continue
                    task_id = int((await reply.json())["task_id"])
                key = uuid.uuid4().hex
                posted = time.perf_counter()
                async with client.post(
                    f"{API}/tasks/{task_id}/responses",
                    json={"verdict": "a"},
                    headers={"Idempotency-Key": key},
                ) as reply:
                    body = await reply.json() if reply.status in (200, 201) else None
                    text = "" if body is not None else await reply.text()
            except (TimeoutError, aiohttp.ClientError) as exc:
                load.error(f"{type(exc).__name__}", str(exc))
                continue
            end = time.perf_counter()
            if body is None or body.get("response_id") is None or body["task_id"] != task_id:
                load.error(f"POST {reply.status}", text or str(body))
                continue
            load.acknowledged[key] = task_id
            load.post_seconds.append(end - posted)
            load.cycle_seconds.append(end - start)


async def _clients(base: str, project_id: int, tokens: list[str], votes: int) -> Load:
    load = Load()
    share, extra = divmod(votes, len(tokens))
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(
        *(
            _annotator(base, project_id, token, share + (i < extra), load)
            for i, token in enumerate(tokens)
        )
    )
    load.seconds = time.perf_counter() - start
    load.cpu_seconds = time.process_time() - cpu
    return load


def generate_load(base: str, project_id: int, tokens: list[str], votes: int) -> Load:
    """``votes`` votes on the project from one concurrent client per token, spread evenly."""
    return run_loop(_clients(base, project_id, tokens, votes))


@dataclass(frozen=True)
class Tally:
    """Acknowledged votes checked against the rows in the database.

    ``lost``: acknowledged, but no response with that key on that task. ``duplicated``: rows
    too many: a second response on a task, a key stored twice, an item answered past its
    overlap. ``unacknowledged``: stored, never acknowledged (a reply the client did not get).
    """

    stored: int
    lost: int
    duplicated: int
    unacknowledged: int


def stored_votes(url: str, project_id: int) -> list[tuple[str, int, int]]:
    """(Idempotency-Key, task id, item id) of every response stored in the project."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Response.idempotency_key, Response.task_id, Task.item_id)
                .join(Task, Response.task_id == Task.id)
                .join(Item, Task.item_id == Item.id)
                .where(Item.project_id == project_id)
            )
            return [(key, task_id, item_id) for key, task_id, item_id in rows]
    finally:
        engine.dispose()


def tally(
    rows: Iterable[tuple[str, int, int]], acknowledged: Mapping[str, int], overlap: int = 1
) -> Tally:
    """Count ``rows`` (:func:`stored_votes`) against ``acknowledged`` (key -> task id).

    >>> tally([("k1", 1, 10), ("k2", 2, 11)], {"k1": 1, "k2": 2})
    Tally(stored=2, lost=0, duplicated=0, unacknowledged=0)
    >>> tally([("k1", 1, 10), ("k1", 3, 10), ("k3", 3, 12)], {"k1": 1, "k2": 2})
    Tally(stored=3, lost=1, duplicated=3, unacknowledged=1)
    """
    rows = list(rows)
    stored = {(key, task_id) for key, task_id, _ in rows}
    excess = 0
    for counts in (
        Counter(task_id for _, task_id, _ in rows),
        Counter(key for key, _, _ in rows),
    ):
        excess += sum(count - 1 for count in counts.values())
    per_item = Counter(item_id for _, _, item_id in rows)
    excess += sum(max(count - overlap, 0) for count in per_item.values())
    return Tally(
        stored=len(rows),
        lost=sum((key, task_id) not in stored for key, task_id in acknowledged.items()),
        duplicated=excess,
        unacknowledged=len({key for key, _, _ in rows} - acknowledged.keys()),
    )


def count_votes(
    url: str, project_id: int, acknowledged: Mapping[str, int], overlap: int = 1
) -> Tally:
    """:func:`tally` of the project's votes, read from the database after a run."""
    return tally(stored_votes(url, project_id), acknowledged, overlap)


def insert_vote(
    connection: Connection, item_id: int, contributor_id: int, key: str, verdict: str = "a"
) -> int:
    """Insert a task of the item for the contributor and its vote (the rows a vote makes),
    through SQLAlchemy Core in the connection's transaction; the task's id."""
    created = connection.execute(
        insert(Task).values(item_id=item_id, contributor_id=contributor_id)
    ).inserted_primary_key
    assert created is not None
    task_id = int(created[0])
    connection.execute(
        insert(Response).values(
            task_id=task_id, contributor_id=contributor_id, verdict=verdict, idempotency_key=key
        )
    )
    return task_id


def raw_insert_rate(url: str, votes: int, synchronous: str = "NORMAL") -> float:
    """Votes/s inserting a task row and its response row through SQLAlchemy Core, one
    transaction (one commit) per vote, one connection: the ceiling a server that commits each
    vote alone can reach. ``synchronous`` is SQLite's (ignored on PostgreSQL)."""
    project_id, _ = seed(url, 0, votes)
    engine = make_engine(url, sqlite_synchronous=synchronous)
    try:
        with session_factory(engine)() as session:
            contributor_id = create_contributor(session, f"raw-{uuid.uuid4().hex[:8]}")[0].id
        with engine.connect() as connection:
            item_ids = list(
                connection.scalars(select(Item.id).where(Item.project_id == project_id))
            )
        start = time.perf_counter()
        with engine.connect() as connection:
            for item_id in item_ids:
                with connection.begin():
                    insert_vote(connection, item_id, contributor_id, uuid.uuid4().hex)
        seconds = time.perf_counter() - start
        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count(Response.id)).where(Response.contributor_id == contributor_id)
            )
        if stored != len(item_ids):
            raise RuntimeError(f"raw inserts: {stored} rows stored of {len(item_ids)}")
        return len(item_ids) / seconds
    finally:
        engine.dispose()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database for the block, dropped afterwards: its SQLAlchemy URL and
    its ``synchronous_commit`` setting. ``admin_url`` is a libpq URL of a database of the same
    server (``postgresql://postgres@127.0.0.1:5432/postgres``)."""
    name = f"crowdtune_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            row = admin.execute("SHOW synchronous_commit").fetchone()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL at {admin_url} cannot be used: {exc}") from None
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}", str(row[0] if row else "unknown")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
