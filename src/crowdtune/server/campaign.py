"""A Crowd-SFT campaign end to end, through the real server and worker: the demo's loop.

:func:`run_loop_campaign` starts ``crowdtune serve --worker`` on a fresh SQLite file, creates a
revision project of CaR answers (the gold items keep the expert's revision as their reference,
never trained on), lets a scripted crowd (:mod:`crowdtune.crowd.scripted`, through
:func:`crowdtune.server.client.simulate_crowd`, i.e. over HTTP like anyone else) revise every
item, then queues ``rounds`` sft rounds through the API, follows their jobs, and reads back the
rounds, the lineage and the credit. The summary says how the base model's NLL of the gold
references moved round by round and what each behaviour earned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from scipy.stats import spearmanr

from crowdtune.crowd.scripted import BEHAVIOUR_QUALITY
from crowdtune.datasets.registry import load_revisions
from crowdtune.records import join_turns
from crowdtune.server.client import API_PREFIX, key_of, simulate_crowd
from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo


def _default_crowd() -> dict[str, int]:
    return {"expert": 6, "lazy": 3, "adversarial": 3}


@dataclass(frozen=True)
class LoopSettings:
    """The loop demo's campaign (defaults: seconds per round on the ``tiny`` model).

    ``crowd`` maps a revision behaviour to how many contributors have it; ``n_items`` CaR train
    answers are revised by everyone; ``n_gold`` CaR test answers keep the expert's revision as
    the reference the candidates are scored on; ``max_chars`` keeps answers short (the tiny
    model's context is small); the rest are the rounds' settings (the API's ``RoundIn``).
    """

    crowd: Mapping[str, int] = field(default_factory=_default_crowd)
    n_items: int = 24
    n_gold: int = 8
    max_chars: int = 400
    rounds: int = 3
    n_groups: int = 4
    strategy: str = "random"
    scheme: str = "marginal"
    max_steps: int = 40
    base_model: str = "tiny"
    seed: int = 0


def _short(revisions: list[Any], n: int, max_chars: int) -> list[Any]:
    fitting = [
        r for r in revisions
        if len(r.original) <= max_chars and len(r.revised) <= max_chars and r.revised != r.original
    ]  # fmt: skip
    if len(fitting) < n:
        raise ValueError(f"CaR has {len(fitting)} answers of at most {max_chars} characters")
    return fitting[:n]


def _items(settings: LoopSettings) -> tuple[list[dict[str, Any]], dict[Any, str]]:
    """The project's items (training answers, then gold ones) and the crowd's references."""
    train = _short(load_revisions("@car:train"), settings.n_items, settings.max_chars)
    gold = _short(load_revisions("@car:test"), settings.n_gold, settings.max_chars)
    items = [
        {"prompt": list(r.prompt), "response": r.original, "id": r.id} for r in train
    ] + [
        {"prompt": list(r.prompt), "response": r.original, "reference": r.revised, "id": r.id}
        for r in gold
    ]  # fmt: skip
    references = {
        key_of("revision", {"prompt": join_turns(r.prompt), "response": r.original}): r.revised
        for r in [*train, *gold]
    }
    return items, references


def _wait(client: httpx.Client, url: str, headers: dict[str, str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url, headers=headers).json()
        if job["state"] not in ("queued", "running"):
            return dict(job)
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not finish within {timeout:.0f} s")


def run_loop_campaign(
    folder: Path,
    settings: LoopSettings | None = None,
    *,
    say: Callable[[str], None] = lambda message: None,
    round_timeout: float = 900.0,
) -> dict[str, Any]:
    """Run the campaign in ``folder`` (its database, models and server log go there; a
    database left by an earlier run is replaced) and return its summary (JSON-ready).

    Raises
    ------
    RuntimeError
        The server did not start, or a round's job did not succeed (its message says why).
    """
    settings = settings or LoopSettings()
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "campaign.db"
    for stale in folder.glob("campaign.db*"):
        stale.unlink()
    url = f"sqlite:///{database}"
    upgrade(url)
    items, references = _items(settings)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            _, admin = repo.create_contributor(session, "organiser", "admin")
            people = []
            for behaviour, count in settings.crowd.items():
                for k in range(count):
                    name = f"{behaviour}-{k + 1}"
                    people.append((name, behaviour, repo.create_contributor(session, name)[1]))
    finally:
        engine.dispose()
    port = free_port()
    server = start_server(
        url, port, log=folder / "serve.log",
        options=["--worker", "--models-dir", str(folder / "models")],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    root = {"Authorization": f"Bearer {admin}"}
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=60.0) as client:
            body = {"name": "CaR revisions", "kind": "revision", "overlap": len(people),
                    "base_model": settings.base_model}  # fmt: skip
            project = client.post(f"{base}{API_PREFIX}/projects", json=body, headers=root)
            project.raise_for_status()
            project_id = project.json()["id"]
            imported = client.post(
                f"{base}{API_PREFIX}/projects/{project_id}/items", json=items, headers=root
            )
            imported.raise_for_status()
            say(f"loop: {len(people)} scripted contributors revise {len(items)} CaR answers")
            for k, (_, behaviour, token) in enumerate(people):
                simulate_crowd(
                    base, token, project_id, behaviour, references=references,
                    seed=settings.seed + k, progress=False, client=client,
                )  # fmt: skip
            collected = time.perf_counter() - started
            timings = []
            for number in range(1, settings.rounds + 1):
                body = {
                    "candidate": "sft",
                    "strategy": settings.strategy,
                    "scheme": settings.scheme,
                    "n_groups": settings.n_groups,
                    "seed": settings.seed + number,
                    "max_steps": settings.max_steps,
                }
                tick = time.perf_counter()
                queued = client.post(
                    f"{base}{API_PREFIX}/projects/{project_id}/rounds", json=body, headers=root
                )
                if queued.status_code != 202:
                    raise RuntimeError(f"round {number} refused: {queued.text}")
                job = _wait(
                    client, f"{base}{API_PREFIX}/jobs/{queued.json()['job_id']}", root,
                    round_timeout,
                )  # fmt: skip
                if job["state"] != "succeeded":
                    raise RuntimeError(f"round {number} {job['state']}: {job['message']}")
                timings.append(time.perf_counter() - tick)
                say(f"loop: round {number} done in {timings[-1]:.1f} s")
            rounds = client.get(f"{base}{API_PREFIX}/projects/{project_id}/rounds", headers=root)
            lineage = client.get(f"{base}{API_PREFIX}/projects/{project_id}/models", headers=root)
            board = client.get(
                f"{base}{API_PREFIX}/projects/{project_id}/leaderboard", headers=root
            )
    finally:
        stop_server(server)
    return summarize_loop(
        rounds.json(), lineage.json(), board.json(), {name: b for name, b, _ in people},
        settings=settings, seconds={"collect": collected, "rounds": timings},
    )  # fmt: skip


def summarize_loop(
    rounds: list[dict[str, Any]],
    lineage: list[dict[str, Any]],
    board: dict[str, Any],
    behaviours: Mapping[str, str],
    *,
    settings: LoopSettings,
    seconds: Mapping[str, Any],
) -> dict[str, Any]:
    """The campaign's outcome: the base model's gold NLL by round (with the winner's CI against
    the base), each contributor's credit with their behaviour, the credit per behaviour, and
    the Spearman correlation of credit with the behaviours' known quality."""
    by_round = []
    for stored in rounds:
        base_value = stored["base_evaluation"]["value"]
        winner = next((c for c in stored["candidates"] if c["group"] == stored["winner"]), None)
        evaluation = (winner or {}).get("evaluation") or {}
        by_round.append(
            {
                "round": stored["round_number"],
                "base": stored["base_name"],
                "base_nll": base_value,
                "winner": None if winner is None else f"group {winner['group']}",
                "winner_nll": evaluation.get("value"),
                "difference": evaluation.get("diff"),
                "ci_low": evaluation.get("ci_low"),
                "ci_high": evaluation.get("ci_high"),
                "base_changed": stored["base_changed"],
                "n_items": evaluation.get("n_items"),
            }
        )
    credit = {
        row["contributor"]: row["credit"]
        for row in board["contributors"]
        if row["contributor"] in behaviours
    }
    people: list[dict[str, Any]] = [
        {"contributor": name, "behaviour": behaviours[name], "credit": credit.get(name)}
        for name in behaviours
    ]
    per_behaviour = {}
    for behaviour in dict.fromkeys(behaviours.values()):
        values = [p["credit"] for p in people if p["behaviour"] == behaviour]
        finite = [v for v in values if v is not None]
        per_behaviour[behaviour] = {
            "n": len(values),
            "mean_credit": float(np.mean(finite)) if finite else None,
        }
    scored = [p for p in people if p["credit"] is not None]
    rho = (
        float(
            spearmanr(
                [BEHAVIOUR_QUALITY[p["behaviour"]] for p in scored], [p["credit"] for p in scored]
            ).statistic
        )  # fmt: skip
        if len(scored) > 2
        else None
    )
    ranked = sorted(scored, key=lambda p: -p["credit"])
    adversary_ranks = [i + 1 for i, p in enumerate(ranked) if p["behaviour"] == "adversarial"]
    return {
        "settings": {**asdict(settings), "crowd": dict(settings.crowd)},
        "rounds": by_round,
        "lineage": lineage,
        "contributors": people,
        "per_behaviour": per_behaviour,
        "spearman_credit_quality": rho,
        "adversary_ranks": adversary_ranks,
        "credit_note": board.get("credit_note"),
        "seconds": dict(seconds),
    }
