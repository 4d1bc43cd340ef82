"""Benchmark: votes per second and latency of the feedback API over HTTP, against the database.

For SQLite (a file) and PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards) it
starts a real ``crowdtune serve`` subprocess and prints, side by side from the same run:

- the anchor (the ceiling): the raw rate of the same database through SQLAlchemy Core, one
  transaction per vote inserting the task row and the response row, as the server must;
- the repository path without HTTP: ``next_task`` then ``submit_response`` called in this
  process, one thread, one session per call (what the two requests of a vote run, minus the
  web framework): the most one server process can reach, since its writes take turns;
- crowdtune over HTTP with 1, 10 and 50 concurrent clients (``aiohttp``, one annotator each;
  httpx's async client tops out near 700 requests/s on this machine, below the server):
  every vote is ``GET tasks/next`` then ``POST`` the response with a unique
  ``Idempotency-Key``; votes/s, p50 and p99 of the vote ``POST`` and of the whole GET+POST cycle;
- the ratio HTTP / raw, and the lost votes (acknowledged but not in the database, counted
  directly after each run; must be 0).

Target (2 cores, client and server on the same machine): >= 1,000 votes/s with p99 < 100 ms
at 50 clients on SQLite, 0 lost votes. Run with ``make bench`` or
``python benchmarks/bench_server.py --votes 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from sqlalchemy import func, insert, select

from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import Item, Response, Task
from crowdtune.store.repository import (
    add_items,
    create_contributor,
    create_project,
    next_task,
    submit_response,
)

API = "/api/v1"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = (1, 10, 50)


def seed(url: str, annotators: int, items: int) -> tuple[int, list[str]]:
    """A project (overlap 1) with ``items`` items and ``annotators`` annotator tokens."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = [
                create_contributor(session, f"bench-{uuid.uuid4().hex[:8]}-{i}", "annotator")[1]
                for i in range(annotators)
            ]
            project = create_project(session, f"bench-{uuid.uuid4().hex}", overlap=1)
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
    """What one run of clients saw."""

    acknowledged: set[str] = field(default_factory=set)
    post_seconds: list[float] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)


async def client_votes(base: str, project_id: int, token: str, votes: int, load: Load) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as client:
        for _ in range(votes):
            start = time.perf_counter()
            async with client.get(f"{API}/projects/{project_id}/tasks/next") as reply:
                if reply.status == 204:
                    return
                reply.raise_for_status()
                task_id = (await reply.json())["task_id"]
            key = uuid.uuid4().hex
            posted = time.perf_counter()
            async with client.post(
                f"{API}/tasks/{task_id}/responses",
                json={"verdict": "a"},
                headers={"Idempotency-Key": key},
            ) as reply:
                text = await reply.text()
            end = time.perf_counter()
            if reply.status not in (200, 201):
                raise RuntimeError(f"vote not acknowledged: {reply.status} {text}")
            load.acknowledged.add(key)
            load.post_seconds.append(end - posted)
            load.cycle_seconds.append(end - start)


async def run_clients(base: str, project_id: int, tokens: list[str], votes: int) -> Load:
    load = Load()
    share, extra = divmod(votes, len(tokens))
    await asyncio.gather(
        *(
            client_votes(base, project_id, token, share + (i < extra), load)
            for i, token in enumerate(tokens)
        )
    )
    return load


def stored_keys(url: str, project_id: int) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(
                connection.scalars(
                    select(Response.idempotency_key)
                    .join(Task, Response.task_id == Task.id)
                    .join(Item, Task.item_id == Item.id)
                    .where(Item.project_id == project_id)
                )
            )
    finally:
        engine.dispose()


def raw_insert_rate(url: str, votes: int, synchronous: str = "NORMAL") -> float:
    """Votes/s inserting task + response rows through SQLAlchemy Core, one commit per vote."""
    project_id, _ = seed(url, 0, votes)
    engine = make_engine(url, sqlite_synchronous=synchronous)
    try:
        with session_factory(engine)() as session:
            contributor, _ = create_contributor(session, f"raw-{uuid.uuid4().hex[:8]}")
            contributor_id = contributor.id
        with engine.connect() as connection:
            item_ids = list(
                connection.scalars(select(Item.id).where(Item.project_id == project_id))
            )
        start = time.perf_counter()
        with engine.connect() as connection:
            for item_id in item_ids:
                with connection.begin():
                    created = connection.execute(
                        insert(Task).values(item_id=item_id, contributor_id=contributor_id)
                    ).inserted_primary_key
                    assert created is not None
                    task_id = created[0]
                    connection.execute(
                        insert(Response).values(
                            task_id=task_id, contributor_id=contributor_id,
                            verdict="a", idempotency_key=uuid.uuid4().hex,
                        )
                    )  # fmt: skip
        seconds = time.perf_counter() - start
        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count(Response.id)).where(Response.contributor_id == contributor_id)
            )
        assert stored == len(item_ids), (stored, len(item_ids))
        return len(item_ids) / seconds
    finally:
        engine.dispose()


def repository_rate(url: str, votes: int) -> float:
    """Votes/s through the repository functions a vote's two requests call, without HTTP."""
    project_id, _ = seed(url, 0, votes)
    engine = make_engine(url)
    try:
        sessions = session_factory(engine)
        with sessions() as session:
            contributor_id = create_contributor(session, f"repo-{uuid.uuid4().hex[:8]}")[0].id
        start = time.perf_counter()
        for _ in range(votes):
            with sessions() as session:
                task = next_task(session, project_id, contributor_id)
                assert task is not None
            with sessions() as session:
                submit_response(
                    session, task.id, contributor_id, verdict="a", idempotency_key=uuid.uuid4().hex
                )
        return votes / (time.perf_counter() - start)
    finally:
        engine.dispose()


def bench_database(name: str, url: str, votes: int, raw_votes: int) -> list[dict[str, object]]:
    raw = raw_insert_rate(url, raw_votes)
    rows: list[dict[str, object]] = [
        {"db": name, "what": "raw Core insert (ceiling)", "votes": raw_votes, "rate": raw},
        *([{"db": name, "what": "raw, synchronous=FULL", "votes": raw_votes // 2,
            "rate": raw_insert_rate(url, raw_votes // 2, "FULL")}] if name == "sqlite" else []),
        {"db": name, "what": "repository, no HTTP, 1 thread", "votes": raw_votes // 2,
         "rate": repository_rate(url, raw_votes // 2)},
    ]  # fmt: skip
    port = free_port()
    server = start_server(url, port)
    try:
        for clients in CONCURRENCY:
            n = votes if clients > 1 else max(votes // 5, 1)
            project_id, tokens = seed(url, clients, n)
            start = time.perf_counter()
            load = asyncio.run(run_clients(f"http://127.0.0.1:{port}", project_id, tokens, n))
            seconds = time.perf_counter() - start
            stored = stored_keys(url, project_id)
            rows.append({
                "db": name, "what": f"HTTP, {clients} clients", "votes": len(load.acknowledged),
                "rate": len(load.acknowledged) / seconds,
                "p50": 1000 * float(np.percentile(load.post_seconds, 50)),
                "p99": 1000 * float(np.percentile(load.post_seconds, 99)),
                "cycle_p99": 1000 * float(np.percentile(load.cycle_seconds, 99)),
                "lost": len(load.acknowledged - stored),
                "extra": len(stored - load.acknowledged),
            })  # fmt: skip
    finally:
        stop_server(server)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--votes",
        type=int,
        default=2000,
        help="votes per HTTP run at 10 and 50 clients (a fifth at 1 client)",
    )
    parser.add_argument(
        "--raw-votes", type=int, default=2000, help="votes inserted directly for the ceiling"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()  # fmt: skip

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        rows += bench_database("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}", args.votes,
                               args.raw_votes)  # fmt: skip
    if not args.no_postgres:
        import psycopg

        name = f"crowdtune_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            rows += bench_database("postgres", url, args.votes, args.raw_votes)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"feedback API over HTTP vs raw inserts, {os.cpu_count()} cores, client and server "
          "on this machine")  # fmt: skip
    header = (f"  {'db':<9} {'run':<27} {'votes':>7} {'votes/s':>9} {'/raw':>6} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'cycle p99':>9} {'lost':>5}")  # fmt: skip
    print(header)
    raw_rate = {
        row["db"]: row["rate"] for row in rows if row["what"] == "raw Core insert (ceiling)"
    }
    for row in rows:
        rate = float(row["rate"])  # type: ignore[arg-type]
        line = f"  {row['db']!s:<9} {row['what']!s:<27} {row['votes']:>7,} {rate:>9,.0f}"
        if not str(row["what"]).startswith("raw"):
            line += f" {rate / float(raw_rate[row['db']]):>6.2f}"  # type: ignore[arg-type]
        if "p50" in row:
            line += (f" {row['p50']:>7.1f} {row['p99']:>7.1f} "
                     f"{row['cycle_p99']:>9.1f} {row['lost']:>5}")  # fmt: skip
        print(line)
    at50 = next(r for r in rows if r["db"] == "sqlite" and r["what"] == "HTTP, 50 clients")
    lost = sum(int(str(r.get("lost", 0))) for r in rows)
    print(f"  target: sqlite, 50 clients: >= 1,000 votes/s and p99 < 100 ms -> "
          f"{float(str(at50['rate'])):,.0f} votes/s, p99 {float(str(at50['p99'])):.1f} ms; "
          f"lost votes in all runs: {lost}")  # fmt: skip
    assert all(r.get("lost", 0) == 0 and r.get("extra", 0) == 0 for r in rows), "votes lost"


if __name__ == "__main__":
    main()
