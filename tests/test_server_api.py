"""The HTTP API end to end: projects, imports (JSON and arena CSV), assignment with overlap,
idempotent votes, exports that parse back, stats and leaderboard; tokens, roles, limits."""

import json
from collections import defaultdict

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from crowdtune.datasets.comparisons import read_arena_csv, read_jsonl, write_arena_csv
from crowdtune.records import Comparison, Verdict
from crowdtune.server import create_app
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import Response
from crowdtune.store.repository import create_contributor

API = "/api/v1"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'api.db'}"


def people(url):
    """An admin and two annotators; returns their auth headers by name."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = {
                name: create_contributor(session, name, role)[1]
                for name, role in [("root", "admin"), ("ann", "annotator"), ("bob", "annotator")]
            }
    finally:
        engine.dispose()
    return {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}


@pytest.fixture
def api(sqlite_url):
    """A client on a fresh SQLite database, and the headers of root (admin), ann and bob."""
    auth = people(sqlite_url)
    with TestClient(create_app(sqlite_url)) as client:
        yield client, auth


JSON_ITEMS = [
    {"prompt": "2+2?", "response_a": "4", "response_b": "5", "gold": "a", "id": "q0"},
    {"prompt": "capital of France?", "response_a": "Lyon", "response_b": "Paris", "gold": "b",
     "id": "q1", "model_a": "m1", "model_b": "m2"},
    {"prompt": ["hi", "and then?"], "response_a": ["hello", "then this"],
     "response_b": ["hey", "then that"], "id": "q2"},
]  # fmt: skip


def arena_csv(tmp_path, ids=("c0", "c1")):
    rows = [
        Comparison(id=i, prompt=(f"prompt {i}",), response_a=(f"A {i}",),
                   response_b=(f"B {i}",), verdict=Verdict.B, model_a="x", model_b="y")
        for i in ids
    ]  # fmt: skip
    return write_arena_csv(rows, tmp_path / "items.csv").read_bytes()


def new_project(client, auth, name="p", overlap=2):
    reply = client.post(f"{API}/projects", json={"name": name, "overlap": overlap}, headers=auth)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def vote_of(name, prompt):
    """ann answers gold items right and the rest 'a'; bob always 'a', except a tie on c1."""
    if name == "ann":
        return "b" if prompt.startswith("capital") else "a"
    return "tie" if prompt == "prompt c1" else "a"


def run_full_flow(client, auth, tmp_path):
    root = auth["root"]
    project = new_project(client, root, "arena-2025", overlap=2)
    assert (
        client.post(f"{API}/projects", json={"name": "arena-2025"}, headers=root).status_code == 409
    )

    reply = client.post(f"{API}/projects/{project}/items", json=JSON_ITEMS, headers=root)
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"created": 3}
    files = {"file": ("items.csv", arena_csv(tmp_path), "text/csv")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=root)
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"created": 2}

    answered = defaultdict(list)
    for name in ("ann", "bob"):
        while True:
            reply = client.get(f"{API}/projects/{project}/tasks/next", headers=auth[name])
            if reply.status_code == 204:
                break
            assert reply.status_code == 200, reply.text
            task = reply.json()
            assert set(task) == {"task_id", "kind", "item"} and task["kind"] == "pairwise"
            assert set(task["item"]) == {"prompt", "response_a", "response_b"}
            verdict = vote_of(name, task["item"]["prompt"])
            reply = client.post(
                f"{API}/tasks/{task['task_id']}/responses",
                json={"verdict": verdict, "seconds": 3.5},
                headers=auth[name],
            )
            assert reply.status_code == 201, reply.text
            assert reply.json()["verdict"] == verdict
            answered[name].append(task["item"]["prompt"])
    assert len(answered["ann"]) == len(answered["bob"]) == 5
    assert any("\n" in prompt or "hi" in prompt for prompt in answered["ann"])

    # exports: one line (row) per vote, each item voted on by exactly 2 distinct annotators
    exports = {}
    for fmt in ("jsonl", "arena-csv", "trl"):
        reply = client.get(f"{API}/projects/{project}/export", params={"format": fmt}, headers=root)
        assert reply.status_code == 200, reply.text
        assert 'attachment; filename="arena-2025-votes' in reply.headers["content-disposition"]
        path = tmp_path / f"export-{fmt}{'.csv' if fmt == 'arena-csv' else '.jsonl'}"
        path.write_bytes(reply.content)
        exports[fmt] = path
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    votes = read_jsonl(exports["jsonl"])
    assert len(exports["jsonl"].read_text().splitlines()) == len(votes) == 10
    voters = defaultdict(set)
    for vote in votes:
        voters[vote.id.split("/")[0]].add(vote.annotator)
    assert voters == {key: {"ann", "bob"} for key in ("q0", "q1", "q2", "c0", "c1")}
    assert sorted(c.id for c in read_arena_csv(exports["arena-csv"])) == sorted(c.id for c in votes)
    trl = [json.loads(line) for line in exports["trl"].read_text().splitlines()]
    assert len(trl) == 9  # bob's tie is dropped
    assert all({"prompt", "chosen", "rejected"} <= set(row) for row in trl)

    stats = client.get(f"{API}/projects/{project}/stats", headers=root).json()
    assert stats["progress"] == {"items": 5, "tasks": 10, "responses": 10, "open_tasks": 0,
                                 "items_complete": 5, "overlap": 2, "skipped": 0}  # fmt: skip
    assert stats["agreement"]["n_items"] == 5
    assert stats["agreement"]["n_annotators"] == 2
    assert stats["agreement"]["n_votes"] == 10

    board = client.get(f"{API}/projects/{project}/leaderboard", headers=auth["bob"])
    assert board.status_code == 200, board.text
    rows = {row["contributor"]: row for row in board.json()["contributors"]}
    assert rows["ann"] == {
        "contributor": "ann",
        "votes": 5,
        "gold_answered": 2,
        "gold_correct": 2,
        "gold_accuracy": 1.0,
        "majority_agreement": {"share": 0.6, "n": 5},
        "credit": None,
        # the figures of revision and rating projects, null for votes
        "alpha_interval": None,
        "alpha_ordinal": None,
        "unchanged_rate": None,
        "mean_edit_distance": None,
        "mean_gain": None,
    }
    assert rows["bob"]["gold_correct"] == 1 and rows["bob"]["gold_accuracy"] == 0.5
    assert rows["bob"]["majority_agreement"] == {"share": 0.6, "n": 5}  # fmt: skip
    return project


def test_full_flow_on_sqlite(api, tmp_path):
    client, auth = api
    run_full_flow(client, auth, tmp_path)


@pytest.mark.postgres
def test_full_flow_on_postgresql(postgres_url, tmp_path):
    auth = people(postgres_url)
    with TestClient(create_app(postgres_url)) as client:
        run_full_flow(client, auth, tmp_path)


def test_stats_before_two_annotators_share_an_item(api):
    client, auth = api
    project = new_project(client, auth["root"])
    stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
    assert stats["agreement"] is None and stats["agreement_reason"] == "no votes yet"
    assert client.get(f"{API}/projects/999/stats", headers=auth["root"]).status_code == 404


def test_tokens_and_roles_are_checked(api, sqlite_url):
    client, auth = api
    project = new_project(client, auth["root"])
    client.post(f"{API}/projects/{project}/items", json=JSON_ITEMS, headers=auth["root"])
    routes = [
        ("post", f"{API}/projects", {"name": "x"}),
        ("post", f"{API}/projects/{project}/items", JSON_ITEMS),
        ("get", f"{API}/projects/{project}/export", None),
        ("get", f"{API}/projects/{project}/stats", None),
    ]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            reply = client.request(method, path, json=body, headers=headers)
            assert reply.status_code == 401, (path, reply.text)
            assert reply.json()["detail"]
        reply = client.request(method, path, json=body, headers=auth["ann"])
        assert reply.status_code == 403, (path, reply.text)
    for path in (f"/projects/{project}/tasks/next", f"/projects/{project}/leaderboard"):
        assert client.get(API + path).status_code == 401

    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    reply = client.post(
        f"{API}/tasks/{task['task_id']}/responses", json={"verdict": "a"}, headers=auth["bob"]
    )
    assert reply.status_code == 403
    reply = client.post(f"{API}/tasks/9999/responses", json={"verdict": "a"}, headers=auth["ann"])
    assert reply.status_code == 404

    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            dump = repr(
                [connection.execute(text(f'SELECT * FROM "{t}"')).all()
                 for t in inspect(engine).get_table_names()]
            )  # fmt: skip
    finally:
        engine.dispose()
    for headers in auth.values():
        token = headers["Authorization"].removeprefix("Bearer ")
        assert token not in dump


def test_votes_are_idempotent_per_key(api, sqlite_url):
    client, auth = api
    project = new_project(client, auth["root"])
    client.post(f"{API}/projects/{project}/items", json=JSON_ITEMS, headers=auth["root"])
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    path = f"{API}/tasks/{task['task_id']}/responses"
    key = {**auth["ann"], "Idempotency-Key": "vote-1"}
    first = client.post(path, json={"verdict": "b", "reason": "shorter"}, headers=key)
    again = client.post(path, json={"verdict": "b", "reason": "shorter"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(
        path, json={"verdict": "a"}, headers={**auth["ann"], "Idempotency-Key": "vote-2"}
    )
    assert other.status_code == 409
    engine = make_engine(sqlite_url)
    try:
        with session_factory(engine)() as session:
            assert len(session.scalars(select(Response)).all()) == 1
    finally:
        engine.dispose()


def test_malformed_payloads_name_the_field(api, tmp_path):
    client, auth = api
    root = auth["root"]
    project = new_project(client, root)
    bad = [JSON_ITEMS[0], {"prompt": "p", "response_a": "a"}]
    reply = client.post(f"{API}/projects/{project}/items", json=bad, headers=root)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", 1, "response_b"]
    reply = client.post(
        f"{API}/projects/{project}/items", json=[{**JSON_ITEMS[0], "gold": "x"}], headers=root
    )
    assert reply.status_code == 422 and "gold" in reply.json()["detail"][0]["loc"]
    assert (
        client.post(f"{API}/projects/{project}/items", json={"a": 1}, headers=root).status_code
        == 422
    )

    assert (
        client.post(f"{API}/projects/{project}/items", json=JSON_ITEMS, headers=root).status_code
        == 201
    )
    # all-or-nothing: a repeated id rejects the whole batch
    reply = client.post(
        f"{API}/projects/{project}/items",
        json=[{**JSON_ITEMS[0], "id": "new"}, JSON_ITEMS[1]],
        headers=root,
    )
    assert reply.status_code == 409
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    reply = client.post(
        f"{API}/tasks/{task['task_id']}/responses", json={"verdict": "maybe"}, headers=auth["ann"]
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "verdict"]
    reply = client.post(
        f"{API}/tasks/{task['task_id']}/responses",
        json={"verdict": "a", "seconds": -1},
        headers=auth["ann"],
    )
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "seconds"]

    # an arena CSV with a bad row: 422 naming the file, row and column; nothing stored
    lines = arena_csv(tmp_path, ids=("c0", "c1", "c2")).decode().splitlines()
    lines[2] = lines[2].replace(",0,1,0,", ",1,1,0,")  # row 2: two winners
    files = {"file": ("broken.csv", "\n".join(lines).encode(), "text/csv")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=root)
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert "broken.csv, data row 2, column 'winner_model_a, winner_model_b, winner_tie'" in detail
    stats = client.get(f"{API}/projects/{project}/stats", headers=root).json()
    assert stats["progress"]["items"] == 3


def test_oversized_bodies_get_413(sqlite_url):
    auth = people(sqlite_url)
    with TestClient(create_app(sqlite_url, max_body_bytes=2_000)) as client:
        project = new_project(client, auth["root"])
        items = [{**JSON_ITEMS[0], "id": None, "response_a": "x" * 3_000}]
        path = f"{API}/projects/{project}/items"
        reply = client.post(path, json=items, headers=auth["root"])
        assert reply.status_code == 413 and "2000" in reply.json()["detail"]
        body = json.dumps(items).encode()
        chunks = (body[i : i + 500] for i in range(0, len(body), 500))  # no Content-Length
        reply = client.post(
            path, content=chunks, headers={**auth["root"], "Content-Type": "application/json"}
        )
        assert reply.status_code == 413
        stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
        assert stats["progress"]["items"] == 0


def test_rate_limit_per_token_gives_429_with_retry_after(sqlite_url):
    auth = people(sqlite_url)
    with TestClient(create_app(sqlite_url, rate_limit_per_minute=3)) as client:
        project = new_project(client, auth["root"])
        codes = [
            client.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"]).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        reply = client.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"])
        assert reply.status_code == 429 and 1 <= int(reply.headers["Retry-After"]) <= 60
        # another token has its own window
        assert (
            client.get(f"{API}/projects/{project}/leaderboard", headers=auth["bob"]).status_code
            == 200
        )


def test_openapi_docs_are_served(api):
    client, _ = api
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert f"{API}/tasks/{{task_id}}/responses" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_openapi_keeps_the_hot_routes_contract(api):
    """The vote path answers with pre-serialised JSON and authenticates through one dependency
    (SignedInAs): its schema still names the bearer scheme, the bodies and the statuses."""
    client, _ = api
    schema = client.get("/openapi.json").json()
    bearer = schema["components"]["securitySchemes"]["HTTPBearer"]
    assert bearer["scheme"] == "bearer" and "crowdtune users create" in bearer["description"]
    vote = schema["paths"][f"{API}/tasks/{{task_id}}/responses"]["post"]
    task = schema["paths"][f"{API}/projects/{{project_id}}/tasks/next"]["get"]
    listing = schema["paths"][f"{API}/projects"]["get"]
    for operation in (vote, task, listing):
        assert operation["security"] == [{"HTTPBearer": []}]
    assert vote["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResponseOut"
    }
    assert {"200", "201", "422"} <= set(vote["responses"])
    assert "oneOf" in str(task["responses"]["200"]["content"]["application/json"]["schema"])
    assert "204" in task["responses"]
    assert vote["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResponseIn"
    }
