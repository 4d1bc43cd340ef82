"""``crowdtune crowd``: a scripted crowd that answers a running server's tasks over HTTP, like
any person with a token (:func:`crowdtune.server.client.simulate_crowd`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crowdtune.cli.common import JsonOpt, ProgressOpt, fail

crowd_app = typer.Typer(help="Scripted contributors answer a server's tasks over HTTP.")


def read_token(path: Path) -> str:
    """The bearer token in ``path``: its first non-blank line (``crowdtune users create NAME
    annotator | tail -n 1 > FILE`` writes one). Exits cleanly naming the file otherwise."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--token-file {path}: cannot read it ({exc})")
    token = next((line.strip() for line in lines if line.strip()), "")
    if not token:
        fail(f"--token-file {path}: the file is empty; its first line should be the token")
    return token


@crowd_app.command("simulate")
def crowd_simulate_cmd(
    url: str = typer.Option(
        ..., "--url", help="The server's base URL, e.g. http://127.0.0.1:8000."
    ),
    token_file: Path = typer.Option(
        ..., "--token-file", help="A file whose first line is the contributor's bearer token."
    ),
    project: str = typer.Option(..., "--project", help="The project's id or name."),
    behaviour: str = typer.Option(
        ...,
        "--behaviour",
        help="Revisions: expert, lazy, noisy, adversarial. Votes: oracle, random, contrarian.",
    ),
    n: int | None = typer.Option(
        None, "--n", min=0, help="Answer at most N tasks (default: until none is left)."
    ),
    references: str | None = typer.Option(
        None,
        "--references",
        help="Where the items came from, for the truth the API never shows: a revision source "
        "(@car, @car:train, a .jsonl) for expert revisions, a comparison source (@pandalm, an "
        "arena CSV) for votes. Without it, an expert cleans the answer up and voters take the "
        "longer answer as the truth.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the behaviour's randomness."),
    json_out: bool = JsonOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Answer a project's tasks as a scripted contributor.

    Asks the server for the next task and answers it, until none is left (or `--n`), retrying
    after a 429 or 503 as the server asks. `expert` submits the reference revision (from
    `--references`), `lazy` the answer unchanged, `noisy` the answer truncated or its sentences
    shuffled, `adversarial` an unrelated text; `oracle` votes the truth, `random` A or B at
    random, `contrarian` against the truth.

    Prints the counts: tasks answered, answers whose truth was known (`reference`) or not
    (`fallback`), and requests retried.
    """
    import httpx

    from crowdtune.crowd.scripted import behaviour_kind
    from crowdtune.server.client import (
        ApiError,
        references_from,
        resolve_project,
        simulate_crowd,
    )

    try:
        kind = behaviour_kind(behaviour)
    except ValueError as exc:
        fail(f"--behaviour: {exc}")
    token = read_token(token_file)
    table = None
    try:
        if references is not None:
            with httpx.Client(timeout=30.0) as client:
                found = resolve_project(client, url.rstrip("/"), project, token=token)
            if (found.kind == "pairwise") != (kind == "vote"):
                fail(f"--behaviour {behaviour} does not answer a {found.kind} project")
            try:
                table = references_from(references, found.kind)
            except (OSError, ValueError) as exc:
                fail(f"--references {references}: {exc}")
        counts = simulate_crowd(
            url, token, project, behaviour, n=n, references=table, seed=seed, progress=progress
        )
    except ApiError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    except httpx.HTTPError as exc:
        fail(f"--url {url}: {exc}")
    if json_out:
        typer.echo(json.dumps({"behaviour": behaviour, "project": project, **counts}))
        return
    shown = ", ".join(f"{name} {count}" for name, count in counts.items())
    typer.echo(f"{behaviour} on project {project}: {shown}")
