"""``crowdtune serve``: run the feedback API (FastAPI under uvicorn) on a database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from crowdtune.cli.common import fail
from crowdtune.cli.db import DbOpt, upgrade_or_exit
from crowdtune.cli.worker import ModelsDirOpt, start_worker_process


def serve_cmd(
    db: str = DbOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_body_bytes: int = typer.Option(
        1_000_000, "--max-body-bytes", help="Largest request body accepted (larger: 413)."
    ),
    max_decompressed_bytes: int | None = typer.Option(
        None,
        "--max-decompressed-bytes",
        min=1,
        help="Largest uploaded file accepted once decompressed, e.g. a .csv.gz import "
        "(larger: 413). Default: --max-body-bytes.",
    ),
    rate_limit: int = typer.Option(
        600,
        "--rate-limit",
        min=1,
        help="Requests per minute per contributor (API and pages, after sign-in), and per "
        "client address without signing in; bursts as large are allowed (more: 429).",
    ),
    failed_auth_limit: float = typer.Option(
        5.0,
        "--failed-auth-limit",
        min=0.01,
        help="Failed sign-ins or unknown tokens per minute per client address, after a burst "
        "of 10; past that the address gets 429 for everything until it waits. Behind a reverse "
        "proxy, let uvicorn see the client's address (FORWARDED_ALLOW_IPS).",
    ),
    sqlite_sync: str = typer.Option(
        "full",
        "--sqlite-sync",
        help="SQLite only. 'full' (default): every commit is fsynced, so every acknowledged "
        "vote survives the server being killed and the machine losing power; votes that "
        "arrive together share one commit (group commit). 'normal': no fsync per commit "
        "(WAL syncs at checkpoints): acknowledged votes survive the server being killed, but "
        "the last ones may be lost if the machine loses power or the OS crashes; for "
        "throughput on slow disks. PostgreSQL always commits with synchronous_commit=on.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Server processes (uvicorn workers) sharing the port. On PostgreSQL they share "
        "the database natively; on SQLite they take turns writing through a lock on the file "
        "DB.lock beside the database (queued by the kernel, no polling), and assignment stays "
        "exactly-k. Each process keeps its own token cache (a revocation reaches the others "
        "within 10 s) and its own rate limits: a client whose connections reach N processes "
        "may send up to N times --rate-limit and --failed-auth-limit. --worker still starts "
        "one job worker.",
    ),
    busy_timeout: float = typer.Option(
        30.0,
        "--busy-timeout",
        min=0.001,
        help="Seconds a request waits for a database lock another connection holds; past "
        "that it gets 503 with Retry-After.",
    ),
    session_hours: float = typer.Option(
        12.0, "--session-hours", min=0.01, help="A web sign-in ends this many hours after it."
    ),
    session_idle_minutes: float = typer.Option(
        60.0,
        "--session-idle-minutes",
        min=0.1,
        help="A web sign-in ends after this many minutes without a request.",
    ),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request (costs throughput)."
    ),
    sample: str | None = typer.Option(
        None,
        "--sample",
        help="When the database has no project yet: create an admin, three annotators, a "
        "pairwise project of --sample-items comparisons from this source (e.g. @pandalm; a "
        "fifth keep their verdict as gold), a revision project of 30 CaR answers (a third with "
        "the expert's revision as gold) and a rating project of 30 answers on 1-7, and print "
        "the tokens and each project's page. `make serve` uses @pandalm.",
    ),
    sample_items: int = typer.Option(200, "--sample-items", help="Items of the sample project."),
    worker: bool = typer.Option(
        False,
        "--worker/--no-worker",
        help="Start a job worker beside the server, in a process of its own (a one-machine "
        "setup): it runs the Crowd-SFT rounds queued through the API or the admin page. "
        "Elsewhere run `crowdtune worker` on the same database. `make serve` uses it.",
    ),
    models_dir: Path | None = ModelsDirOpt,
    fit_scorer: bool = typer.Option(
        True,
        "--fit-scorer/--no-fit-scorer",
        help="With --sample: fit the CaR quality scorer behind the revision signals' quality "
        "gain if it is not cached yet (once, about 1-2 minutes on 2 cores; the server itself "
        "never fits it).",
    ),
) -> None:
    """Serve the feedback API and web pages.

    Checks first that the database can be served (it opens; a SQLite file is intact, by
    `PRAGMA quick_check`; it takes writes) and exits with status 2 naming the database and the
    problem otherwise. Then migrates it and serves the API (docs at /docs) and the web pages
    until interrupted, in --workers processes. Uses uvloop and httptools when they are
    installed. Next-task and answer requests that arrive together share one commit (group
    commit); each is answered only after that commit, so an acknowledged vote is stored (and,
    by default, on disk).
    """
    import uvicorn

    from crowdtune.server import create_app
    from crowdtune.server.app import APP_CONFIG_ENV
    from crowdtune.store.db import in_memory, normalize_url

    busy_timeout_ms = round(busy_timeout * 1000)
    check_or_exit(db, busy_timeout_ms)  # a URL that does not parse exits here
    if workers > 1 and in_memory(normalize_url(db)):
        raise typer.BadParameter(
            "an in-memory SQLite database lives in one process; serve a file or PostgreSQL "
            f"with --workers {workers}",
            param_hint="--workers",
        )
    upgrade_or_exit(db)
    if sample is not None:
        sample_campaign(db, sample, sample_items, f"http://{host}:{port}")
        if fit_scorer:
            fit_quality_scorer()
    # Passed to every worker process as it is (app_from_environment), so that all of them
    # serve with the same settings.
    config: dict[str, Any] = {
        "db_url": db,
        "max_body_bytes": max_body_bytes,
        "max_decompressed_bytes": max_decompressed_bytes,
        "rate_limit_per_minute": rate_limit,
        "failed_auth_per_minute": failed_auth_limit,
        "sqlite_synchronous": sqlite_sync,
        "busy_timeout_ms": busy_timeout_ms,
        "session_hours": session_hours,
        "session_idle_minutes": session_idle_minutes,
    }
    try:
        app = create_app(**config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sqlite-sync") from None
    typer.echo(f"crowdtune on http://{host}:{port}/ (API docs: http://{host}:{port}/docs)")
    jobs = start_worker_process(db, models_dir) if worker else None
    serving: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "info",
    }
    try:
        if workers == 1:
            uvicorn.run(app, **serving)
        else:
            os.environ[APP_CONFIG_ENV] = json.dumps(config)
            uvicorn.run(
                "crowdtune.server.app:app_from_environment",
                factory=True,
                workers=workers,
                **serving,
            )
    finally:
        if jobs is not None:
            jobs.terminate()
            jobs.wait(timeout=30)


def check_or_exit(db: str, busy_timeout_ms: int) -> None:
    """Exit 2 naming the database and the problem unless it can be served
    (:func:`crowdtune.store.db.check_database`)."""
    from crowdtune.store.db import check_database
    from crowdtune.store.errors import UnusableDatabaseError

    try:
        check_database(db, busy_timeout_ms=busy_timeout_ms)
    except (ValueError, UnusableDatabaseError) as exc:
        fail(str(exc))


def fit_quality_scorer() -> None:
    """Fit and cache the CaR quality scorer the server's revision signals use, unless it is
    cached already (or the data home lacks CaR, which is said)."""
    from crowdtune.curation.scoring import cached_default_scorer, default_scorer
    from crowdtune.datasets.home import DatasetMissingError
    from crowdtune.server.scorer import SCORER_PARAMS

    if cached_default_scorer(SCORER_PARAMS) is not None:
        return
    typer.echo("fitting the CaR quality scorer for the revision signals (once; 1-2 minutes)")
    try:
        default_scorer(params=SCORER_PARAMS)
    except DatasetMissingError as exc:
        typer.echo(f"no quality gain in the revision signals: {exc}")


def sample_campaign(db: str, source: str, items: int, base_url: str) -> None:
    """Set up a sample campaign on an empty (migrated) database and print what to open: a
    pairwise project of ``items`` comparisons from ``source``, a revision project of CaR
    answers (left out, with a note, when the data home lacks CaR) and a rating project.

    The items are loaded first, so a bad source exits before anything is stored.
    """
    from crowdtune.cli.projects import load_items
    from crowdtune.server.sample import (
        SAMPLE_OVERLAP,
        create_sample_campaign,
        sample_rating_items,
        sample_revision_items,
    )
    from crowdtune.store import make_engine, session_factory

    rows = load_items(source, items, gold_share=0.2, seed=0)
    revisions = sample_revision_items()
    ratings = sample_rating_items(rows)
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            made = create_sample_campaign(
                session, f"sample {source}", rows, revisions=revisions, ratings=ratings
            )
    finally:
        engine.dispose()
    if made is None:
        typer.echo(
            "the database has projects already: sign in with the tokens printed when "
            "they were made, or add people with `crowdtune users create`"
        )
        return
    if revisions is None:
        typer.echo(
            "no sample revision project: the data home lacks CaR (car-expert-revised; see "
            "`crowdtune data list`), and its ratings come from the comparisons instead"
        )
    for project in made.projects:
        typer.echo(
            f"sample {project.kind} project {project.id}: {project.n_items} items "
            f"({project.n_gold} gold), overlap {SAMPLE_OVERLAP}; annotate at "
            f"{base_url}/projects/{project.id}/annotate"
        )
    typer.echo(f"sign in at {base_url}/ with one of these tokens (shown once):")
    for name, role, token in made.tokens:
        typer.echo(f"  {name:<12} {role:<10} {token}")
