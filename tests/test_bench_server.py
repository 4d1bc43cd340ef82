"""The server benchmark (benchmarks/bench_server.py) on a tiny load, and its vote counters: a
vote deleted from the database is counted lost, a row too many is counted duplicated."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path

from sqlalchemy import delete, select

from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory
from crowdtune.store.models import Response, Task
from crowdtune.store.repository import create_contributor

# The benchmark's modules are scripts beside each other, not a package: import them by name (the
# load generator's spawned process finds them through the same sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_server = importlib.import_module("bench_server")
server_load = importlib.import_module("server_load")


def test_a_tiny_benchmark_prints_the_table_and_verdicts(capsys):
    assert (
        bench_server.main(
            [
                "--db",
                "sqlite-full",
                "--workers",
                "1",
                "--clients",
                "1,2",
                "--votes",
                "20",
                "--raw-votes",
                "20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| sqlite-full")]
    assert rows[0][1].startswith("raw Core inserts, 1 commit per vote (before / after: ")
    assert rows[0][3] == "40"  # 20 before the HTTP runs, 20 after
    assert [row[1:3] for row in rows[1:]] == [["1", "1"], ["1", "2"]]
    # votes (a fifth at 1 client), errors, lost, duplicated
    assert [(row[3], row[10], row[11], row[12]) for row in rows[1:]] == [
        ("4", "0", "0", "0"),
        ("20", "0", "0", "0"),
    ]
    assert "lost in all 3 runs (warm-ups included): 0, duplicated: 0: met" in out


def test_the_counters_see_a_lost_and_a_duplicated_vote(tmp_path):
    url = f"sqlite:///{tmp_path / 'votes.db'}"
    project_id, tokens = server_load.seed(url, 2, 20)
    port = free_port()
    server = start_server(url, port, log=tmp_path / "server.log")
    try:
        load = server_load.generate_load(f"http://127.0.0.1:{port}", project_id, tokens, 10)
    finally:
        stop_server(server)
    assert len(load.acknowledged) == 10 and not load.errors
    assert len(load.post_seconds) == len(load.cycle_seconds) == 10
    assert server_load.count_votes(url, project_id, load.acknowledged) == server_load.Tally(
        stored=10, lost=0, duplicated=0, unacknowledged=0
    )
    engine = make_engine(url)
    try:
        first, second = list(load.acknowledged)[:2]
        with engine.begin() as connection:
            connection.execute(delete(Response).where(Response.idempotency_key == first))
        assert server_load.count_votes(url, project_id, load.acknowledged).lost == 1
        # A stranger's vote on an answered item (past the overlap of 1), under a key someone
        # else's vote has (stored twice): two rows too many.
        with session_factory(engine)() as session:
            stranger = create_contributor(session, f"s-{uuid.uuid4().hex[:6]}")[0].id
        with engine.begin() as connection:
            answered = connection.scalar(
                select(Task.item_id).join(Response).where(Response.idempotency_key == second)
            )
            server_load.insert_vote(connection, answered, stranger, second, verdict="b")
        counted = server_load.count_votes(url, project_id, load.acknowledged)
        assert (counted.stored, counted.lost, counted.duplicated) == (10, 1, 2)
        assert counted.unacknowledged == 0  # its key is an acknowledged one
    finally:
        engine.dispose()
    # A task answered twice (the schema forbids it; the counter would still see it).
    rows = [("k1", 1, 10), ("k2", 1, 10)]
    assert server_load.tally(rows, {"k1": 1}).duplicated == 2  # the task, and its item's overlap
