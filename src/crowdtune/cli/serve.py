"""``crowdtune serve``: run the feedback API (FastAPI under uvicorn) on a database."""

from __future__ import annotations

import typer

from crowdtune.cli.db import DbOpt, upgrade_or_exit


def serve_cmd(
    db: str = DbOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_body_bytes: int = typer.Option(
        1_000_000, "--max-body-bytes", help="Largest request body accepted (larger: 413)."
    ),
    rate_limit: int = typer.Option(
        600, "--rate-limit", help="Requests per minute per token (more: 429)."
    ),
) -> None:
    """Migrate the database, then serve the API (docs at /docs) until interrupted."""
    import uvicorn

    from crowdtune.server import create_app

    upgrade_or_exit(db)
    app = create_app(db, max_body_bytes=max_body_bytes, rate_limit_per_minute=rate_limit)
    typer.echo(f"crowdtune API on http://{host}:{port}/api/v1 (docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port)
