"""Benchmark: votes per second and latency of the feedback API over HTTP, against its database.

For each database (``--db``: SQLite with ``synchronous=FULL``, SQLite with ``NORMAL``, PostgreSQL
with ``synchronous_commit=on`` in a fresh database on 127.0.0.1:5432, dropped afterwards) it
prints, side by side from the same run:

- the anchor (the ceiling): the raw rate of the same database through SQLAlchemy Core, one
  connection, one transaction (one commit) per vote inserting the task row and the response row;
  on SQLite with the same ``synchronous`` mode as the server; measured before and after the
  database's HTTP runs, and their mean taken (an fsync's cost drifts on a shared machine);
- crowdtune over HTTP: a real ``crowdtune serve`` subprocess with 1 and 2 server processes
  (``--workers``; the 2-process rows are skipped, with the reason printed, by a ``crowdtune
  serve`` without that option), loaded by 1, 10, 50 and 200 concurrent clients (``--clients``),
  one annotator each. Every vote is ``GET tasks/next`` then ``POST`` the vote with a fresh
  ``Idempotency-Key``; the clients (aiohttp) run in a process of their own. Votes/s, the ratio
  to the raw ceiling, p50 and p99 of the vote ``POST`` and of the whole GET+POST cycle, and
  the CPU the server processes and the load generator used per second of the run (100 % is one
  core; client near 100 %: the client, not the server, is the limit);
- after every run, counted in the database: lost votes (acknowledged, i.e. 201/200 with a
  ``response_id``, but not stored on their task) and duplicated ones (a task answered twice, a
  key stored twice, an item past its overlap). Both must be 0; the script exits 1 otherwise.

Then verdicts against the targets of issue #22 (2 cores shared by client and server): SQLite
FULL at 50 clients >= 1,000 votes/s and p99 <= 100 ms (aim: 4,000 and 50 ms); PostgreSQL at 50
clients >= 1,000 votes/s (aim: 3,000); ratio to the raw ceiling >= 1. The p99 judged is the
whole GET+POST cycle's, a vote as this benchmark counts it. ``--profile DIR`` adds one
unmeasured run per server at 50 clients under py-spy and prints where the server's time goes.

SQLite files live in a temporary folder (``TMPDIR`` picks the disk, which decides what an
fsync costs). Run with ``make bench``, or e.g. ``python benchmarks/bench_server.py --votes
1000 --clients 1,50 --db sqlite-full --workers 1,2``; ``--quick`` is a small run for CI.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from crowdtune.server.process import crowdtune_command, free_port, start_server, stop_server
from server_load import (
    Load,
    Tally,
    count_votes,
    generate_load,
    postgres_database,
    raw_insert_rate,
    seed,
)

DATABASES = {"sqlite-full": "FULL", "sqlite-normal": "NORMAL", "postgres": None}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Clients and votes of the unmeasured run that warms a server up (imports, caches, pages).
WARM_UP = (4, 100)
TARGET_CLIENTS = 50


@dataclass
class Run:
    """One row of the table: the raw ceiling (``clients`` 0) or an HTTP run; ``clients`` -1: a
    warm-up or profiling run, not printed, whose votes the verdict counts."""

    db: str
    workers: int
    clients: int
    votes: int
    rate: float
    load: Load | None = None
    tally: Tally | None = None
    #: The server's CPU time during the run per second of it (1.0: one core busy throughout).
    server_cpu: float = 0.0
    #: The time its threads were ready to run but waited for a CPU, per second of the run.
    server_wait: float = 0.0
    #: A raw ceiling's rates before and after the HTTP runs (``rate`` is their mean).
    raw: tuple[float, float] = (0.0, 0.0)


def ms(seconds: list[float], q: float) -> float:
    return 1000 * float(np.percentile(seconds, q)) if seconds else float("nan")


def serve_has_workers() -> bool:
    """Whether this ``crowdtune serve`` runs several server processes (``--workers``)."""
    shown = subprocess.run(
        [*crowdtune_command(), "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return "--workers" in shown.stdout


def server_options(synchronous: str | None, workers: int, has_workers: bool) -> list[str]:
    options = ["--sqlite-sync", synchronous.lower()] if synchronous else []
    return options + (["--workers", str(workers)] if has_workers else [])


def server_times(pid: int) -> tuple[float, float]:
    """Seconds the server and its worker processes have so far spent on a CPU (psutil), and
    waiting in the kernel's run queue for one (Linux schedstat): what the machine's other
    load, the load generator and the database server included, took from it.

    The wait is read from ``/proc/PID/task/TID/schedstat`` (psutil does not expose it) and sums
    the threads alive now; ``nan`` where the kernel does not keep it.
    """
    server = psutil.Process(pid)
    cpu = waited = 0.0
    for process in (server, *server.children(recursive=True)):
        with suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            cpu += times.user + times.system
            for thread in process.threads():
                with suppress(FileNotFoundError):  # a thread that ended meanwhile
                    stat = Path(f"/proc/{process.pid}/task/{thread.id}/schedstat").read_text()
                    waited += int(stat.split()[1]) / 1e9
    if not Path("/proc/self/schedstat").exists():
        waited = float("nan")
    return cpu, waited


def one_run(
    clients: Executor, url: str, server: int, port: int, n_clients: int, votes: int
) -> tuple[Load, Tally, float, float]:
    """Seed a project, load it from the client process, count its votes in the database; and
    per second of the run, the server's (process id ``server``) CPU time and run-queue wait."""
    project_id, tokens = seed(url, n_clients, votes)
    base = f"http://127.0.0.1:{port}"
    cpu, waited = server_times(server)
    load = clients.submit(generate_load, base, project_id, tokens, votes).result()
    cpu_after, waited_after = server_times(server)
    tally = count_votes(url, project_id, load.acknowledged)
    return load, tally, (cpu_after - cpu) / load.seconds, (waited_after - waited) / load.seconds


def bench_server(
    clients: Executor,
    db: str,
    url: str,
    workers: int,
    args: argparse.Namespace,
    folder: Path,
    has_workers: bool,
) -> list[Run]:
    """The HTTP runs against one ``crowdtune serve`` with ``workers`` processes on ``url``."""
    port = free_port()
    options = server_options(DATABASES[db], workers, has_workers)
    log = folder / f"serve-{db}-{workers}.log"
    server = start_server(url, port, log=log, options=options)
    runs = []
    try:
        _, warm, _, _ = one_run(clients, url, server.pid, port, *WARM_UP)
        runs.append(Run(db, workers, -1, 0, 0.0, None, warm))  # not printed, but counted
        for n_clients in args.clients:
            votes = args.votes if n_clients > 1 else max(args.votes // 5, 1)
            load, tally, cpu, waited = one_run(clients, url, server.pid, port, n_clients, votes)
            rate = len(load.acknowledged) / load.seconds
            runs.append(
                Run(db, workers, n_clients, len(load.acknowledged), rate, load, tally, cpu, waited)
            )
            print(
                f"  {db}, {workers} process(es), {n_clients} clients: {rate:,.0f} votes/s, "
                f"cycle p99 {ms(load.cycle_seconds, 99):.1f} ms, {sum(load.errors.values())} "
                f"errors, {tally.lost} lost, {tally.duplicated} duplicated",
                flush=True,
            )
            for message in load.messages:
                print(f"    {message}")
        if args.profile is not None:
            run = profile(clients, url, port, server.pid, args.profile / f"{db}-{workers}.txt")
            if run is not None:
                runs.append(Run(db, workers, -1, 0, 0.0, None, run))
    finally:
        stop_server(server)
    return runs


#: py-spy's samples per second.
PROFILE_RATE = 200


def profile(clients: Executor, url: str, port: int, pid: int, out: Path) -> Tally | None:
    """One unmeasured run at 50 clients with py-spy sampling the server (its processes)."""
    # py-spy beside this interpreter (a virtual environment's), else on the PATH.
    where = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    py_spy = shutil.which("py-spy", path=where)
    if py_spy is None:
        print("    no profile: py-spy is not installed (pip install py-spy)")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--function", "--format",
               "raw", "--rate", str(PROFILE_RATE), "--output", str(out)]  # fmt: skip
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.perf_counter()
    try:
        _, tally, _, _ = one_run(clients, url, pid, port, TARGET_CLIENTS, 2000)
    finally:
        spy.send_signal(signal.SIGINT)
        seconds = time.perf_counter() - start
        _, error = spy.communicate(timeout=60)
    if not out.exists():
        print(f"    py-spy wrote no profile: {error.decode(errors='replace')[-500:]}")
        return tally
    print(f"    profile of the server at {TARGET_CLIENTS} clients ({out}):")
    for line in profile_summary(out.read_text().splitlines(), seconds):
        print(f"      {line}")
    return tally


#: Where a frame's file lies -> the part of the stack it stands for in the profile summary.
AREAS = (
    ("sqlalchemy", "SQLAlchemy (and the driver calls it makes)"),
    ("psycopg", "psycopg (mostly awaiting PostgreSQL's replies)"),
    ("sqlite3", "sqlite3"),
    ("pydantic", "pydantic"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("uvicorn", "uvicorn"),
    ("httptools", "uvicorn"),
    ("asyncio", "asyncio"),
    ("concurrent", "threads"),
    ("crowdtune", "crowdtune"),
)


#: Files whose frames, at the top of a stack, mean a thread waits for another thread or
#: process (an idle pool thread, a writer with an empty queue, a request awaiting its batch):
#: py-spy counts such threads as active; the summary sets them apart.
WAITING = ("threading.py", "queue.py", "multiprocessing/connection.py", "selectors.py")


def profile_summary(lines: list[str], seconds: float, top: int = 12) -> list[str]:
    """py-spy's raw (collapsed) stacks of ``seconds`` summed over all server processes: how many
    threads were working (not waiting for another thread), on the event loop or off it, their
    self time by area, the top functions by self time and crowdtune's functions by time inside
    them (shares of the working samples)."""
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    on_loop = total = waiting = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples = int(count)
        where = frames[-1].rpartition("(")[2]
        if any(name in where for name in WAITING):
            waiting += samples
            continue
        total += samples
        on_loop += samples * any("asyncio/runners.py" in frame for frame in frames)
        own[frames[-1]] += samples
        for frame in set(frames):
            inside[frame] += samples * ("crowdtune/" in frame)
        areas[next((name for key, name in AREAS if key in where), "other")] += samples
    if not total:
        return ["no samples"]
    share = [f"{name} {100 * n / total:.0f} %" for name, n in areas.most_common()]
    out = [
        f"{total / PROFILE_RATE / seconds:.2f} threads working on average ({total:,} samples; "
        f"{100 * on_loop / total:.0f} % of them on the event loop), "
        f"{waiting / PROFILE_RATE / seconds:.2f} waiting for another thread or process",
        "self time by area: " + ", ".join(share),
        "top functions, self:",
    ]
    out += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    out.append("crowdtune's functions, inside (self + callees):")
    out += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in inside.most_common(top) if n]
    return out


def bench_database(
    clients: Executor,
    db: str,
    url: str,
    args: argparse.Namespace,
    folder: Path,
    has_workers: bool,
) -> list[Run]:
    """The raw ceiling of ``db`` before and after its HTTP runs (their mean is the ceiling: on a
    shared machine an fsync's cost drifts within minutes), and the HTTP runs."""
    synchronous = DATABASES[db] or "NORMAL"
    before = raw_insert_rate(url, args.raw_votes, synchronous)
    print(f"  {db}: raw inserts, one commit each: {before:,.0f} votes/s", flush=True)
    runs = []
    for workers in args.workers:
        if workers > 1 and not has_workers:
            print(
                f"  {db}, {workers} processes: skipped, this `crowdtune serve` has no "
                "--workers option"
            )
            continue
        runs += bench_server(clients, db, url, workers, args, folder, has_workers)
    after = raw_insert_rate(url, args.raw_votes, synchronous)
    print(f"  {db}: raw inserts again, after the HTTP runs: {after:,.0f} votes/s", flush=True)
    return [Run(db, 0, 0, 2 * args.raw_votes, (before + after) / 2, raw=(before, after)), *runs]


def table(runs: list[Run]) -> list[str]:
    """The runs as a Markdown table, ready to paste into RESULTS.md."""
    raw = {run.db: run.rate for run in runs if run.clients == 0}
    out = [
        "| database | server processes | clients | votes | votes/s | / raw | POST p50 ms | "
        "POST p99 ms | cycle p50 ms | cycle p99 ms | errors | lost | duplicated | "
        "server CPU | server waits for a CPU | client CPU |",
        "|" + "---|" * 16,
    ]
    for run in runs:
        if run.clients == 0:
            out.append(
                f"| {run.db} | raw Core inserts, 1 commit per vote (before / after: "
                f"{run.raw[0]:,.0f} / {run.raw[1]:,.0f}) | 1 | {run.votes:,} | {run.rate:,.0f} | "
                "1.00 | | | | | | | | | | |"
            )
        elif run.load is not None and run.tally is not None:
            load, tally = run.load, run.tally
            out.append(
                f"| {run.db} | {run.workers} | {run.clients} | {run.votes:,} | {run.rate:,.0f} | "
                f"{run.rate / raw[run.db]:.2f} | {ms(load.post_seconds, 50):.1f} | "
                f"{ms(load.post_seconds, 99):.1f} | {ms(load.cycle_seconds, 50):.1f} | "
                f"{ms(load.cycle_seconds, 99):.1f} | {sum(load.errors.values())} | "
                f"{tally.lost} | {tally.duplicated} | {100 * run.server_cpu:.0f} % | "
                f"{100 * run.server_wait:.0f} % | "
                f"{100 * load.cpu_seconds / load.seconds:.0f} % |"
            )
    return out


def verdicts(runs: list[Run]) -> tuple[list[str], bool]:
    """Lines judging the runs against issue #22's targets, and whether no vote was lost or
    duplicated in any run (warm-up and profile runs included)."""
    raw = {run.db: run.rate for run in runs if run.clients == 0}
    out = []
    for run in runs:
        if run.clients != TARGET_CLIENTS or run.load is None:
            continue
        name = f"{run.db}, {run.workers} process(es), {TARGET_CLIENTS} clients"
        p99 = ms(run.load.cycle_seconds, 99)
        if run.db == "sqlite-full":
            met = run.rate >= 1000 and p99 <= 100
            aim = run.rate >= 4000 and p99 <= 50
            out.append(
                f"{name}: {run.rate:,.0f} votes/s, cycle p99 {p99:.0f} ms; target >= 1,000 "
                f"and <= 100 ms: {'met' if met else 'MISSED'}; aim >= 4,000 and <= 50 ms: "
                f"{'met' if aim else 'not yet'}"
            )
        elif run.db == "postgres":
            out.append(
                f"{name}: {run.rate:,.0f} votes/s; target >= 1,000: "
                f"{'met' if run.rate >= 1000 else 'MISSED'}; aim >= 3,000: "
                f"{'met' if run.rate >= 3000 else 'not yet'}"
            )
        ratio = run.rate / raw[run.db]
        out.append(
            f"{name}: {ratio:.2f} of the raw one-commit-per-vote ceiling; target >= 1: "
            f"{'met' if ratio >= 1 else 'MISSED'}"
        )
    if not any(run.clients == TARGET_CLIENTS for run in runs):
        out.append(f"no run at {TARGET_CLIENTS} clients: the throughput targets are not judged")
    cost = [1000 * r.load.cpu_seconds / r.votes for r in runs if r.load is not None and r.votes]
    if cost:
        cap = 1000 * (os.cpu_count() or 1) / float(np.median(cost))
        out.append(
            f"the load generator costs {np.median(cost):.2f} ms of CPU per vote (median of the "
            f"runs): on these {os.cpu_count()} cores, shared with the server, it alone caps what "
            f"this benchmark can measure at {cap:,.0f} votes/s"
        )
    tallies = [run.tally for run in runs if run.tally is not None]
    lost = sum(t.lost for t in tallies)
    duplicated = sum(t.duplicated for t in tallies)
    clean = lost == 0 and duplicated == 0
    out.append(
        f"acknowledged votes lost in all {len(tallies)} runs (warm-ups included): {lost}, "
        f"duplicated: {duplicated}: {'met' if clean else 'FAILED'}"
    )
    return out, clean


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--votes",
        type=int,
        help="votes per run (a fifth at 1 client); default 2000, 200 with --quick",
    )
    parser.add_argument(
        "--raw-votes",
        type=int,
        help="votes inserted directly for the ceiling; default 2000, 200 with --quick",
    )
    parser.add_argument(
        "--clients",
        type=numbers,
        help="concurrent clients of each run, "
        "comma-separated; default 1,10,50,200, 1,10 with --quick",
    )
    parser.add_argument(
        "--db",
        default="sqlite-full,sqlite-normal,postgres",
        help=f"databases, comma-separated, of: {', '.join(DATABASES)}",
    )
    parser.add_argument(
        "--workers",
        type=numbers,
        default=[1, 2],
        help="server processes (crowdtune serve --workers), comma-separated",
    )
    parser.add_argument("--quick", action="store_true", help="a small run for CI and smoke tests")
    parser.add_argument(
        "--postgres-admin",
        default=PG_ADMIN,
        help="a database of the PostgreSQL server to create the benchmark's database from",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder for py-spy profiles (raw stacks) "
        "of the server at 50 clients, one extra unmeasured run per server",
    )
    args = parser.parse_args(argv)
    args.votes = args.votes or (200 if args.quick else 2000)
    args.raw_votes = args.raw_votes or (200 if args.quick else 2000)
    args.clients = args.clients or ([1, 10] if args.quick else [1, 10, 50, 200])
    args.db = [name.strip() for name in args.db.split(",") if name.strip()]
    unknown = sorted(set(args.db) - set(DATABASES))
    if unknown:
        parser.error(f"--db: unknown {', '.join(unknown)}; expected some of {', '.join(DATABASES)}")
    if min(args.clients + args.workers) < 1 or args.votes < 1 or args.raw_votes < 1:
        parser.error("--votes, --raw-votes, --clients and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    has_workers = serve_has_workers()
    before = os.getloadavg()[0]
    runs: list[Run] = []
    notes = []
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as clients,
    ):
        folder = Path(tmp)
        for db in args.db:
            if db == "postgres":
                database = postgres_database(args.postgres_admin)
            else:
                database = nullcontext((f"sqlite:///{folder / f'{db}.db'}", None))
            with database as (url, synchronous_commit):
                if synchronous_commit is not None:
                    notes.append(f"PostgreSQL synchronous_commit={synchronous_commit}")
                runs += bench_database(clients, db, url, args, folder, has_workers)
    after = os.getloadavg()
    print(
        f"\nfeedback API over HTTP vs raw inserts, {os.cpu_count()} cores shared by the server "
        f"and the load generator; load average (1 minute) {before:.1f} at the start, "
        f"{after[0]:.1f} at the end (15 minutes: {after[2]:.1f})"
        + "".join(f"; {note}" for note in notes)
    )
    print("\n".join(table(runs)))
    lines, clean = verdicts(runs)
    print("\n" + "\n".join(lines))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
