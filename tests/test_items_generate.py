"""Closing the loop: ``crowdtune items generate`` answers prompts with a project's models and
imports them as items (crowdtune.crowd.generated), and the model leaderboard ranks the models by
the crowd's votes (crowdtune.server.model_board: API and admin page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.crowd.generated import ItemModel, generated_items, prompt_turns, single_turn
from crowdtune.server import create_app
from crowdtune.server.client import simulate_crowd
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo
from crowdtune.store.models import Item, ModelVersion

API = "/api/v1"


@pytest.fixture
def store(tmp_path: Path):
    """A migrated SQLite store with an admin and two annotators: (url, sessions, tokens)."""
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        people = [("root", "admin"), ("ann", "annotator"), ("bob", "annotator")]
        tokens = {name: repo.create_contributor(session, name, role)[1] for name, role in people}
    yield url, sessions, tokens
    engine.dispose()


def add_lineage(sessions, project_id: int, *models: tuple[str, str, str | None, bool]) -> None:
    """Lineage rows (name, path, parent, is_base), as a round's job stores them."""
    with sessions() as session:
        for number, (name, path, parent, is_base) in enumerate(models):
            session.add(ModelVersion(project_id=project_id, name=name, path=path, parent=parent,
                                     is_base=is_base, round_number=number or None))  # fmt: skip
        session.commit()


@pytest.fixture(scope="module")
def second_tiny(tmp_path_factory) -> str:
    """A checkpoint folder of another tiny model (other random weights), as a round saves one."""
    from crowdtune.training import load_model

    folder = tmp_path_factory.mktemp("r1-g0")
    model, tokenizer = load_model("tiny", seed=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def items_of(sessions, project_id: int) -> list[Item]:
    with sessions() as session:
        return list(session.scalars(select(Item).where(Item.project_id == project_id)))


def test_items_generate_answers_with_the_base_of_a_revision_project(store, one_torch_thread):
    url, sessions, _ = store
    with sessions() as session:
        project_id = repo.create_project(session, "rev", kind="revision").id
    args = ["items", "generate", "--db", url, "--project", "rev", "--prompts", "@car:test",
            "--n", "3", "--max-new-tokens", "4", "--batch-size", "2", "--json",
            "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"created": 3' in result.stdout and '"model_a": "tiny"' in result.stdout
    items = items_of(sessions, project_id)
    assert len(items) == 3 and {item.model_a for item in items} == {"tiny"}
    assert all(item.response_a[0].strip() and item.response_b is None for item in items)
    again = CliRunner().invoke(app, args)  # the same prompts drawn: the next three instead
    assert again.exit_code == 0, again.output
    assert '"created": 3' in again.stdout and '"skipped": 3' in again.stdout
    prompts = [tuple(item.prompt) for item in items_of(sessions, project_id)]
    assert len(prompts) == 6 and len(set(prompts)) == 6
    refused = CliRunner().invoke(app, ["items", "generate", "--db", url, "--project", "rev",
                                       "--prompts", "@car:test", "--model-b", "tiny"])  # fmt: skip
    assert refused.exit_code == 2 and "--model-b is for pairwise projects" in refused.output


def test_items_generate_pits_the_base_against_the_previous_one(
    store, second_tiny, one_torch_thread
):
    url, sessions, _ = store
    with sessions() as session:
        project_id = repo.create_project(session, "pairs").id
    args = ["items", "generate", "--db", url, "--project", str(project_id), "--prompts",
            "@car:test", "--n", "6", "--max-new-tokens", "3", "--no-progress"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 2 and "--model-b" in first.output  # no previous base yet
    add_lineage(sessions, project_id, ("tiny", "tiny", None, False),
                ("r1-g0", second_tiny, "tiny", True))  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "added 6 pairwise items" in result.stdout and "(r1-g0 vs tiny)" in result.stdout
    items = items_of(sessions, project_id)
    assert all({item.model_a, item.model_b} == {"r1-g0", "tiny"} for item in items)
    assert {item.model_a for item in items} == {"r1-g0", "tiny"}  # A is drawn per item


def test_generated_items_checks_its_models():
    tiny = ItemModel("tiny", "tiny")
    with pytest.raises(ValueError, match="needs two models"):
        generated_items(["p"], "pairwise", tiny)
    with pytest.raises(ValueError, match="both models are 'tiny'"):
        generated_items(["p"], "pairwise", tiny, tiny)
    earlier_answer = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(ValueError, match="user-only"):
        prompt_turns(earlier_answer)
    assert not single_turn(earlier_answer) and single_turn("a") and single_turn(earlier_answer[:1])


MODELS = {"good": "a long and careful answer, with reasons", "mid": "a short answer",
          "bad": "no"}  # fmt: skip


def arena_items() -> list[dict[str, str]]:
    """Every pair of the three models on four prompts, both orders; the better model always
    writes the longer answer (what a scripted voter without references takes as the truth)."""
    names = list(MODELS)
    return [
        {"prompt": f"question {i}", "response_a": f"{MODELS[a]} ({i})",
         "response_b": f"{MODELS[b]} ({i})", "model_a": a, "model_b": b}
        for i in range(4) for a in names for b in names if a != b
    ]  # fmt: skip


def sign_in(client: TestClient, token: str) -> None:
    page = client.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/signin", data={"token": token, "csrf_token": csrf}).status_code == 200


def test_model_leaderboard_ranks_the_models_by_the_crowds_votes(store):
    url, sessions, tokens = store
    with sessions() as session:
        project_id = repo.create_project(session, "arena", overlap=2).id
        repo.add_items(session, project_id, [*arena_items(), {"prompt": "q", "response_a": "x",
                                             "response_b": "y"}])  # fmt: skip
    add_lineage(sessions, project_id, ("bad", "bad", None, False), ("good", "g", "bad", True))
    root = {"Authorization": f"Bearer {tokens['root']}"}
    with TestClient(create_app(url)) as client:
        empty = client.get(f"{API}/projects/{project_id}/models/leaderboard", headers=root).json()
        assert empty["models"] == [] and "no votes" in empty["note"]
        for name, behaviour in [("ann", "oracle"), ("bob", "random")]:
            simulate_crowd("http://testserver", tokens[name], project_id, behaviour,
                           progress=False, client=client)  # fmt: skip
        ann = {"Authorization": f"Bearer {tokens['ann']}"}
        assert client.get(f"{API}/projects/{project_id}/models/leaderboard",
                          headers=ann).status_code == 403  # fmt: skip
        reply = client.get(f"{API}/projects/{project_id}/models/leaderboard", headers=root)
        assert reply.status_code == 200, reply.text
        board = reply.json()
        assert client.get(f"{API}/projects/{project_id}/models/leaderboard").status_code == 401

        sign_in(client, tokens["root"])
        html = client.get(f"/projects/{project_id}/admin/models")
        admin = client.get(f"/projects/{project_id}/admin")
    with TestClient(create_app(url)) as client:
        sign_in(client, tokens["ann"])
        assert client.get(f"/projects/{project_id}/admin/models").status_code == 403
    assert [row["model"] for row in board["models"]] == ["good", "mid", "bad"]
    assert board["models"][0]["rank"] == 1 and board["models"][0]["is_base"] is True
    assert board["models"][2]["round"] is None and board["models"][0]["round"] == 1
    assert board["n_votes"] == 2 * 24 and board["n_votes_without_models"] == 2
    good, mid, bad = board["models"]
    assert good["ci_low"] <= good["rating"] <= good["ci_high"] and good["rating"] > mid["rating"]
    assert good["wins"] + good["losses"] + good["ties"] == good["n_battles"] == 32
    assert html.status_code == 200 and "good (base)" in html.text and "mid" in html.text
    assert f"/projects/{project_id}/admin/models" in admin.text


def test_model_leaderboard_of_a_revision_project_says_why_it_is_empty(store):
    url, sessions, tokens = store
    with sessions() as session:
        project_id = repo.create_project(session, "rev", kind="revision").id
    with TestClient(create_app(url)) as client:
        root = {"Authorization": f"Bearer {tokens['root']}"}
        board = client.get(f"{API}/projects/{project_id}/models/leaderboard", headers=root).json()
        missing = client.get(f"{API}/projects/999/models/leaderboard", headers=root)
    assert board["models"] == [] and "revision project" in board["note"]
    assert missing.status_code == 404
