"""Votes the server must refuse, storing nothing, on SQLite and PostgreSQL: a page vote on a task
of another project than the one in its URL (404), and an ``Idempotency-Key`` sent again with
another body (422 naming the key; the same body again still gets the stored reply, 200)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crowdtune.server import create_app
from crowdtune.store import ReusedKeyError, make_engine, session_factory
from crowdtune.store.models import Response
from crowdtune.store.repository import (
    add_items,
    contributor_by_name,
    create_project,
    next_task,
    submit_response,
)
from test_server_api import people
from test_server_pages import csrf_of, sign_in

API = "/api/v1"


def items(prefix: str) -> list[dict[str, Any]]:
    return [{"prompt": f"{prefix} {i}", "response_a": "a", "response_b": "b"} for i in range(2)]


@pytest.fixture
def site(url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], str]]:
    """A client; the auth headers of root (admin), ann and bob; the database URL."""
    auth = people(url)
    with TestClient(create_app(url)) as client:
        yield client, auth, url


def stored_votes(url: str) -> list[tuple[int, str, str | None, float | None]]:
    """(task id, verdict, reason, seconds) of every stored response."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Response.task_id, Response.verdict, Response.reason, Response.seconds_spent)
            )
            return [(task, verdict.name.lower(), reason, s) for task, verdict, reason, s in rows]
    finally:
        engine.dispose()


def project_with_items(client: TestClient, root: dict[str, str], name: str) -> int:
    reply = client.post(f"{API}/projects", json={"name": name}, headers=root)
    project = int(reply.json()["id"])
    reply = client.post(f"{API}/projects/{project}/items", json=items(name), headers=root)
    assert reply.status_code == 201, reply.text
    return project


def test_the_page_vote_needs_the_task_to_be_in_the_project_of_its_url(site):
    client, auth, url = site
    here = project_with_items(client, auth["root"], "here")
    there = project_with_items(client, auth["root"], "there")
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    sign_in(client, tokens["ann"])
    html = client.get(f"/projects/{here}/annotate").text
    task = client.get(f"/projects/{there}/next", headers={"Accept": "application/json"}).json()
    headers = {"X-CSRF-Token": csrf_of(html), "Idempotency-Key": f"task-{task['task_id']}"}
    wrong = f"/projects/{here}/tasks/{task['task_id']}/vote"

    reply = client.post(wrong, json={"verdict": "a"}, headers=headers)
    assert reply.status_code == 404, reply.text
    assert f"no task with id {task['task_id']} in project {here}" in reply.json()["detail"]
    form = {"verdict": "a", "csrf_token": headers["X-CSRF-Token"]}
    reply = client.post(wrong, data=form, follow_redirects=False)
    assert reply.status_code == 404 and "in project" in reply.text
    assert stored_votes(url) == []

    right = f"/projects/{there}/tasks/{task['task_id']}/vote"
    assert client.post(right, json={"verdict": "a"}, headers=headers).status_code == 201
    # A replay of the stored vote through the wrong project is refused too.
    assert client.post(wrong, json={"verdict": "a"}, headers=headers).status_code == 404
    assert stored_votes(url) == [(task["task_id"], "a", None, None)]


def test_a_reused_idempotency_key_with_another_body_is_422(site):
    client, auth, url = site
    project = project_with_items(client, auth["root"], "keys")
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    path = f"{API}/tasks/{task['task_id']}/responses"
    headers = {**auth["ann"], "Idempotency-Key": "vote-1"}
    body = {"verdict": "b", "reason": "shorter", "seconds": 2.5}
    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.text

    for changed, field in [
        ({"verdict": "a"}, "verdict"),
        ({"reason": "longer"}, "reason"),
        ({"reason": None}, "reason"),
        ({"seconds": 3.0}, "seconds"),
        ({"seconds": None}, "seconds"),
    ]:
        reply = client.post(path, json={**body, **changed}, headers=headers)
        assert reply.status_code == 422, (changed, reply.text)
        detail = reply.json()["detail"]
        assert "'vote-1'" in detail and field in detail, detail

    again = client.post(path, json=body, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored_votes(url) == [(task["task_id"], "b", "shorter", 2.5)]


def test_the_page_vote_refuses_a_reused_key_with_another_verdict(site):
    client, auth, url = site
    project = project_with_items(client, auth["root"], "page keys")
    sign_in(client, auth["ann"]["Authorization"].split()[1])
    html = client.get(f"/projects/{project}/annotate").text
    task = client.get(f"/projects/{project}/next", headers={"Accept": "application/json"}).json()
    vote = f"/projects/{project}/tasks/{task['task_id']}/vote"
    headers = {"X-CSRF-Token": csrf_of(html), "Idempotency-Key": task["idempotency_key"]}

    assert (
        client.post(vote, json={"verdict": "b", "seconds": 4.0}, headers=headers).status_code == 201
    )
    again = client.post(vote, json={"verdict": "b", "seconds": 4.0}, headers=headers)
    assert again.status_code == 200 and again.json()["replayed"] is True
    reply = client.post(vote, json={"verdict": "tie", "seconds": 4.0}, headers=headers)
    assert reply.status_code == 422 and task["idempotency_key"] in reply.json()["detail"]
    # The no-JavaScript form sends the same fixed key per task: a second, different answer
    # is an error page, not a silent success.
    form = {"verdict": "a", "csrf_token": headers["X-CSRF-Token"],
            "idempotency_key": task["idempotency_key"]}  # fmt: skip
    reply = client.post(vote, data=form, follow_redirects=False)
    assert reply.status_code == 422 and "verdict" in reply.text
    assert stored_votes(url) == [(task["task_id"], "b", None, 4.0)]


def test_submit_response_compares_the_body_under_a_known_key(url):
    people(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            project = create_project(session, "store")
            add_items(session, project.id, items("store"))
            ann = contributor_by_name(session, "ann")
            task = next_task(session, project.id, ann.id)
            stored, created = submit_response(
                session, task.id, ann.id, verdict="a", seconds=1.0, idempotency_key="k"
            )
            assert created
            with pytest.raises(ReusedKeyError, match=r"'k' was sent before with a different "
                               r"verdict, seconds"):  # fmt: skip
                submit_response(session, task.id, ann.id, verdict="b", idempotency_key="k")
            with pytest.raises(ValueError):  # a ReusedKeyError is a ValueError too
                submit_response(session, task.id, ann.id, verdict="a", idempotency_key="k")
            again, created = submit_response(
                session, task.id, ann.id, verdict="A", seconds=1, idempotency_key="k"
            )
            assert again.id == stored.id and not created
            other = create_project(session, "elsewhere")
            with pytest.raises(LookupError, match=f"in project {other.id}"):
                submit_response(
                    session, task.id, ann.id, verdict="a", seconds=1.0, idempotency_key="k",
                    project_id=other.id,
                )  # fmt: skip
    finally:
        engine.dispose()
    assert len(stored_votes(url)) == 1
