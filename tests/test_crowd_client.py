"""The scripted crowd as a client of the HTTP API (crowdtune.server.client) and its command
(``crowdtune crowd simulate``): expert and lazy revisions, oracle and contrarian votes, stored
as the database shows them; retries honour Retry-After."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.crowd.scripted import OFF_TOPIC_TEXTS
from crowdtune.datasets.comparisons import write_arena_csv
from crowdtune.datasets.registry import load_revisions
from crowdtune.records import Comparison, Verdict, join_turns
from crowdtune.server import create_app
from crowdtune.server.client import (
    ApiError,
    key_of,
    references_from,
    resolve_project,
    simulate_crowd,
)
from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo
from crowdtune.store.models import Item

BASE = "http://testserver"
N_CAR = 4


def no_sleep(seconds: float) -> None:
    """Retries in tests never wait."""


@pytest.fixture
def store(tmp_path: Path):
    """A migrated SQLite store with an admin and three annotators; yields (url, session
    factory, tokens by name)."""
    url = f"sqlite:///{tmp_path / 'crowd.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        tokens = {
            name: repo.create_contributor(session, name, role)[1]
            for name, role in [("root", "admin"), ("ex", "annotator"), ("lz", "annotator"),
                               ("adv", "annotator")]
        }  # fmt: skip
    yield url, sessions, tokens
    engine.dispose()


def car_project(sessions, name: str = "car", overlap: int = 3) -> int:
    """A revision project on the first CaR test items (their expert revisions as references)."""
    revisions = load_revisions("@car:test")[:N_CAR]
    with sessions() as session:
        project = repo.create_project(session, name, kind="revision", overlap=overlap)
        repo.add_items(session, project.id, [repo.revision_item(r) for r in revisions])
        return project.id


PAIRS = [
    Comparison(id=f"c{i}", prompt=(f"question {i}?",), response_a=(f"answer A{i}",),
               response_b=(f"a longer answer B{i}",), verdict=verdict)
    for i, verdict in enumerate([Verdict.A, Verdict.B, Verdict.A, Verdict.TIE])
]  # fmt: skip


def pairwise_project(sessions, overlap: int = 2) -> int:
    with sessions() as session:
        project = repo.create_project(session, "pairs", overlap=overlap)
        repo.add_items(session, project.id, PAIRS)  # gold not stored: only the client knows it
        return project.id


def revisions_by(sessions, project_id: int) -> dict[str, dict[str, str]]:
    """contributor -> original answer -> their revision, as stored."""
    with sessions() as session:
        rows = repo.project_revisions(session, project_id)
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        out.setdefault(str(row.contributor), {})[row.original] = row.revised
    return out


def test_expert_lazy_and_adversary_revise_car_items_over_the_api(store) -> None:
    url, sessions, tokens = store
    project_id = car_project(sessions)
    references = references_from("@car:test", "revision")
    car = {r.original: r for r in load_revisions("@car:test")[:N_CAR]}
    with TestClient(create_app(url)) as client:
        expert = simulate_crowd(BASE, tokens["ex"], "car", "expert", references=references,
                                progress=False, client=client)  # fmt: skip
        lazy = simulate_crowd(BASE, tokens["lz"], project_id, "lazy", progress=False,
                              client=client)  # fmt: skip
        adversary = simulate_crowd(BASE, tokens["adv"], project_id, "adversarial", n=2,
                                   references=references, progress=False,
                                   client=client)  # fmt: skip
    assert expert == {"answered": N_CAR, "replayed": 0, "reference": N_CAR, "fallback": 0,
                      "retried": 0}  # fmt: skip
    assert lazy["answered"] == N_CAR and lazy["fallback"] == N_CAR
    assert adversary["answered"] == 2
    stored = revisions_by(sessions, project_id)
    assert stored["ex"] == {original: car[original].reference for original in car}
    assert stored["lz"] == {original: original for original in car}
    assert len(stored["adv"]) == 2
    for original, revised in stored["adv"].items():
        assert revised != original and revised not in OFF_TOPIC_TEXTS  # drawn from other items


def test_oracle_and_contrarian_vote_with_and_against_the_truth(store, tmp_path: Path) -> None:
    url, sessions, tokens = store
    project_id = pairwise_project(sessions)
    csv = write_arena_csv(PAIRS, tmp_path / "pairs.csv")
    references = references_from(str(csv), "pairwise")
    truth = {join_turns(c.prompt): c.verdict for c in PAIRS}
    with TestClient(create_app(url)) as client:
        for name, behaviour in [("ex", "oracle"), ("lz", "contrarian")]:
            counts = simulate_crowd(BASE, tokens[name], "pairs", behaviour, references=references,
                                    seed=3, progress=False, client=client)  # fmt: skip
            assert counts["answered"] == len(PAIRS) and counts["reference"] == len(PAIRS)
    with sessions() as session:
        votes = repo.project_votes(session, project_id)
        prompt_of = {item.id: join_turns(item.prompt) for item in session.scalars(select(Item))}
    assert len(votes) == 2 * len(PAIRS)
    for v in votes:
        expected = truth[prompt_of[v.item_id]]
        if v.contributor == "ex":
            assert v.verdict == expected
        elif expected is Verdict.TIE:
            assert v.verdict is not Verdict.TIE
        else:
            assert v.verdict == expected.swapped()


def test_voters_without_references_take_the_longer_answer(store) -> None:
    url, sessions, tokens = store
    pairwise_project(sessions, overlap=1)
    with TestClient(create_app(url)) as client:
        counts = simulate_crowd(BASE, tokens["ex"], "pairs", "oracle", progress=False,
                                client=client)  # fmt: skip
    assert counts["fallback"] == len(PAIRS)
    with sessions() as session:
        votes = repo.project_votes(session, 1)
    assert {v.verdict for v in votes} == {Verdict.B}  # B is the longer answer of every pair


def test_retries_honour_retry_after_and_refusals_raise(store) -> None:
    url, sessions, tokens = store
    car_project(sessions, overlap=1)
    waits: list[float] = []
    with TestClient(create_app(url)) as server:
        refusals = iter([429, 503])

        def flaky(request: httpx.Request) -> httpx.Response:
            status = next(refusals, None)
            if status is not None:
                return httpx.Response(status, headers={"Retry-After": "2"}, json={"detail": "x"})
            reply = server.request(request.method, str(request.url), headers=request.headers,
                                   content=request.content)  # fmt: skip
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

        with httpx.Client(transport=httpx.MockTransport(flaky)) as client:
            counts = simulate_crowd(BASE, tokens["lz"], "car", "lazy", n=1, progress=False,
                                    client=client, sleep=waits.append)  # fmt: skip
        assert counts["answered"] == 1 and counts["retried"] == 2 and waits == [2.0, 2.0]
        with pytest.raises(ApiError, match="401"):
            simulate_crowd(BASE, "not-a-token", "car", "lazy", progress=False, client=server)
        with pytest.raises(ValueError, match="no project 'nope'.*1 \\(car\\)"):
            simulate_crowd(BASE, tokens["lz"], "nope", "lazy", progress=False, client=server)
        with pytest.raises(ValueError, match="answers pairwise projects"):
            simulate_crowd(BASE, tokens["lz"], "car", "oracle", progress=False, client=server)
        assert resolve_project(server, BASE, "1", token=tokens["lz"]).kind == "revision"


def test_key_of_matches_what_the_api_serves() -> None:
    assert key_of("revision", {"prompt": "p", "response": "r"}) == ("p", "r")


def test_crowd_simulate_command_against_a_running_server(store, tmp_path: Path) -> None:
    url, sessions, tokens = store
    project_id = car_project(sessions, overlap=2)
    token_file = tmp_path / "ex.token"
    token_file.write_text(tokens["ex"] + "\n", encoding="utf-8")
    port = free_port()
    server = start_server(url, port, log=tmp_path / "serve.log")
    try:
        runner = CliRunner()
        args = ["crowd", "simulate", "--url", f"http://127.0.0.1:{port}", "--token-file",
                str(token_file), "--project", "car", "--behaviour", "expert", "--references",
                "@car:test", "--json", "--no-progress"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert '"answered": 4' in result.stdout and '"reference": 4' in result.stdout
        wrong = runner.invoke(app, [*args[:9], "oracle", "--no-progress"])
        assert wrong.exit_code == 2 and "answers pairwise projects" in wrong.output
        (tmp_path / "empty").write_text("\n")
        empty = runner.invoke(app, [*args[:5], str(tmp_path / "empty"), *args[6:10]])
        assert empty.exit_code == 2 and "the file is empty" in empty.output
    finally:
        stop_server(server)
    stored = revisions_by(sessions, project_id)
    car = {r.original: r.reference for r in load_revisions("@car:test")[:N_CAR]}
    assert stored["ex"] == car
