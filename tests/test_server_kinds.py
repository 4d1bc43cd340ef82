"""The API of revision and rating projects refuses what does not fit, naming the field (or the
file, row and column): project settings, items, uploads, answers and export formats; replays
an answer sent again under its Idempotency-Key; and its stats, leaderboard and rounds answer
every kind without a server error. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from crowdtune.server import create_app
from crowdtune.store import make_engine, session_factory
from crowdtune.store import repository as repo
from crowdtune.store.repository import MAX_REVISION
from test_server_api import people
from test_server_inputs import REPLACEMENT, store_directly

API = "/api/v1"
REVISION_ITEMS = [
    {"prompt": "Name a colour.", "response": "blue", "reference": "Blue.", "id": "r0"},
    {"prompt": ["Hi", "Count to three."], "response": "1 2 3", "id": "r1"},
]
RATING_ITEMS = [
    {"prompt": "2+2?", "response": "4", "gold": 5, "id": "s0"},
    {"prompt": "Capital of France?", "response": "Lyon", "gold": [1, 2], "id": "s1"},
    {"prompt": "Say hi.", "response": "hi", "id": "s2"},
]


@pytest.fixture
def api(url: str):
    """A client on a fresh database; the auth headers of root (admin), ann and bob; and the
    ids of a revision project and a rating project (scale 1 to 5), each with items."""
    auth = people(url)
    root = auth["root"]
    with TestClient(create_app(url)) as client:
        projects = {}
        for kind, body, items in (
            ("revision", {}, REVISION_ITEMS),
            ("rating", {"scale": {"min": 1, "max": 5}}, RATING_ITEMS),
        ):
            reply = client.post(
                f"{API}/projects", json={"name": kind, "kind": kind, "overlap": 2, **body},
                headers=root,
            )  # fmt: skip
            assert reply.status_code == 201, reply.text
            projects[kind] = reply.json()["id"]
            reply = client.post(f"{API}/projects/{projects[kind]}/items", json=items, headers=root)
            assert reply.status_code == 201 and reply.json() == {"created": len(items)}
        yield client, auth, projects, url


def loc_of(reply: Any) -> list[Any]:
    assert reply.status_code == 422, reply.text
    return reply.json()["detail"][0]["loc"]


def items_of(client: TestClient, project: int, root: dict[str, str]) -> int:
    stats = client.get(f"{API}/projects/{project}/stats", headers=root)
    return int(stats.json()["progress"]["items"])


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"kind": "revision", "scale": {"min": 1, "max": 5}}, ["body", "scale"], "only a rating"),
        ({"kind": "pairwise", "scale": {"min": 1, "max": 5}}, ["body", "scale"], "only a rating"),
        ({"kind": "rating", "scale": {"min": 5, "max": 5}}, ["body", "scale"], "min must be below"),
        ({"kind": "rating", "scale": {"min": 7, "max": 1}}, ["body", "scale"], "min must be below"),
        ({"kind": "rating", "scale": {"min": 1.5, "max": 5}}, ["body", "scale", "min"], "integer"),
        ({"kind": "rating", "scale": {"min": 0, "max": 5000}}, ["body", "scale", "max"], "1000"),
        ({"kind": "rating", "editor_prefill": False}, ["body", "editor_prefill"], "revision"),
        ({"kind": "ranking"}, ["body", "kind"], "pairwise"),
        ({"kind": "revision", "assignment": "random"}, ["body", "assignment"], "depth"),
    ],
)
def test_project_settings_that_do_not_fit_name_the_field(api, body, loc, message):
    client, auth, _, _ = api
    reply = client.post(f"{API}/projects", json={"name": "x", **body}, headers=auth["root"])
    assert loc_of(reply) == loc and message in reply.json()["detail"][0]["msg"], reply.text


def test_project_settings_are_stored(api):
    client, auth, projects, _ = api
    root = auth["root"]
    body = {"name": "empty editor", "kind": "revision", "editor_prefill": False,
            "assignment": "breadth"}  # fmt: skip
    project = client.post(f"{API}/projects", json=body, headers=root).json()["id"]
    client.post(f"{API}/projects/{project}/items", json=REVISION_ITEMS, headers=root)
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    assert task["editor_prefill"] is False and task["kind"] == "revision"
    task = client.get(f"{API}/projects/{projects['rating']}/tasks/next", headers=auth["ann"])
    assert task.json()["scale"] == {"min": 1, "max": 5}
    assert task.json()["item"] in [{"prompt": i["prompt"], "response": i["response"]}
                                   for i in RATING_ITEMS]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "item", "loc"),
    [
        ("revision", {"prompt": "p", "response": ""}, [0, "response"]),
        ("revision", {"prompt": "p", "response": "   "}, [0, "response"]),
        ("revision", {"prompt": "p"}, [0, "response"]),
        ("revision", {"prompt": "p", "response": "r", "reference": ""}, [0, "reference"]),
        ("revision", {"prompt": "p", "response": "r", "gold": 3}, [0, "gold"]),
        ("revision", {"prompt": "p", "response_a": "r", "response_b": "s"}, [0, "response"]),
        ("rating", {"prompt": "p", "response": "r", "gold": 6}, [0, "gold"]),
        ("rating", {"prompt": "p", "response": "r", "gold": [4, 2]}, [0, "gold"]),
        ("rating", {"prompt": "p", "response": "r", "gold": [0, 2]}, [0, "gold"]),
        ("rating", {"prompt": "p", "response": "r", "gold": [1, 2, 3]}, [0, "gold", "range"]),
        ("rating", {"prompt": "p", "response": "r", "gold": True}, [0, "gold", "score"]),
        ("rating", {"prompt": "p", "response": "r", "reference": "x"}, [0, "reference"]),
    ],
)
def test_bad_items_name_the_field_and_store_nothing(api, kind, item, loc):
    client, auth, projects, _ = api
    project, root = projects[kind], auth["root"]
    before = items_of(client, project, root)
    good = {"prompt": "fine", "response": "fine"}
    reply = client.post(f"{API}/projects/{project}/items", json=[good, item], headers=root)
    assert loc_of(reply)[:1] == ["body"] and loc_of(reply)[1:] == [loc[0] + 1, *loc[1:]]
    assert items_of(client, project, root) == before


@pytest.mark.parametrize(
    ("kind", "name", "content", "message"),
    [
        ("rating", "items.csv", "prompt,response,gold\np,r,3\nq,s,9\n",
         "items.csv, data row 2, column 'gold'"),
        ("rating", "items.csv", "prompt,response,gold\np,r,[3\n",
         "items.csv, data row 1, column 'gold'"),
        ("rating", "items.csv", "prompt,gold\np,3\n", "column 'response'"),
        ("revision", "items.jsonl",
         '{"prompt": "p", "response": "r"}\n{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n',
         "items.jsonl, data row 3, column 'response'"),
        ("revision", "items.jsonl", '{"prompt": "p", "response": "r", "refrence": "x"}\n',
         "items.jsonl, data row 1, column 'refrence'"),
        ("revision", "items.jsonl", '{"prompt": "p", "response": "r", "id": "' + "x" * 300 + '"}\n',
         "items.jsonl, data row 1, column 'id'"),
        ("revision", "items.csv", 'prompt,response,id\np,r,a\nq,s,a\n',
         "items.csv, data row 2, column 'id'"),
        ("revision", "items.txt", "prompt,response\np,r\n", "the file name must end in .jsonl"),
        ("revision", "items.jsonl.gz", "not gzip", "not a readable gzip file"),
    ],
)  # fmt: skip
def test_bad_uploads_name_file_row_and_column_and_store_nothing(api, kind, name, content, message):
    client, auth, projects, _ = api
    project, root = projects[kind], auth["root"]
    before = items_of(client, project, root)
    files = {"file": (name, content.encode(), "text/plain")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=root)
    assert reply.status_code == 422 and message in reply.json()["detail"], reply.text
    assert items_of(client, project, root) == before


def test_uploads_of_each_format_are_imported(api):
    client, auth, projects, _ = api
    root = auth["root"]
    jsonl = "".join(json.dumps(item) + "\n" for item in RATING_ITEMS).replace('"s', '"t')
    csv = 'id,prompt,response,gold,notes\nc0,"Say ""hi"".",hi,"[2, 3]",ignored\nc1,p,r,,\n'
    for name, content, created in (("more.jsonl", jsonl, 3), ("more.csv", csv, 2)):
        files = {"file": (name, content.encode(), "text/plain")}
        reply = client.post(f"{API}/projects/{projects['rating']}/items", files=files, headers=root)
        assert reply.status_code == 201 and reply.json() == {"created": created}, reply.text
    assert items_of(client, projects["rating"], root) == 3 + 3 + 2


def answer(client: TestClient, task: int, body: dict[str, Any], headers: dict[str, str]):
    return client.post(f"{API}/tasks/{task}/responses", json=body, headers=headers)


def test_bad_answers_name_the_field_and_store_nothing(api):
    client, auth, projects, _ = api
    ann = auth["ann"]
    revision = client.get(f"{API}/projects/{projects['revision']}/tasks/next", headers=ann).json()
    rating = client.get(f"{API}/projects/{projects['rating']}/tasks/next", headers=ann).json()
    for body, loc in [
        ({"revision": ""}, ["body", "revision"]),
        ({"revision": " \n "}, ["body", "revision"]),
        ({"revision": "x" * (MAX_REVISION + 1)}, ["body", "revision"]),
        ({"revision": 3}, ["body", "revision"]),
        ({"skip": True}, ["body", "reason"]),
        ({"skip": True, "reason": "  "}, ["body", "reason"]),
        ({}, ["body"]),
        ({"revision": "better", "score": 3}, ["body"]),
        ({"revision": "better", "aspects": {"tone": 3}}, ["body", "aspects"]),
    ]:
        assert loc_of(answer(client, revision["task_id"], body, ann)) == loc, body
    too_long = answer(client, revision["task_id"], {"revision": "x" * (MAX_REVISION + 1)}, ann)
    assert f"at most {MAX_REVISION}" in too_long.json()["detail"][0]["msg"]
    for task, body, message in [
        (revision, {"score": 3}, "this is a revision task: send 'revision', not 'score'"),
        (revision, {"verdict": "a"}, "this is a revision task: send 'revision', not 'verdict'"),
        (rating, {"revision": "x"}, "this is a rating task: send 'score', not 'revision'"),
        (rating, {"score": 6}, "score must be a whole number from 1 to 5"),
        (rating, {"score": 0}, "score must be a whole number from 1 to 5"),
        (rating, {"score": 2.5}, "score must be a whole number from 1 to 5"),
        (rating, {"score": 3, "aspects": {"tone": 9}}, "aspects.tone must be a whole number"),
    ]:
        reply = answer(client, task["task_id"], body, ann)
        assert reply.status_code == 422 and message in reply.json()["detail"], (body, reply.text)
    reply = answer(client, rating["task_id"], {"score": True}, ann)
    assert loc_of(reply) == ["body", "score"]
    for kind in ("revision", "rating"):
        stats = client.get(f"{API}/projects/{projects[kind]}/stats", headers=auth["root"]).json()
        assert stats["progress"]["responses"] == 0 and stats["progress"]["open_tasks"] == 1


def test_answers_are_idempotent_per_key(api):
    client, auth, projects, _ = api
    ann = auth["ann"]
    for kind, body, other in (
        ("revision", {"revision": "Blue!", "seconds": 4}, {"revision": "Blue?"}),
        ("rating", {"score": 4, "aspects": {"tone": 5}, "reason": "fine"}, {"score": 5}),
    ):
        task = client.get(f"{API}/projects/{projects[kind]}/tasks/next", headers=ann).json()
        key = {**ann, "Idempotency-Key": f"{kind}-1"}
        first = answer(client, task["task_id"], body, key)
        again = answer(client, task["task_id"], body, key)
        assert (first.status_code, again.status_code) == (201, 200), again.text
        assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
        stored = first.json()
        assert stored["verdict"] is None and stored["skipped"] is False
        if kind == "revision":
            assert stored["revision"] == "Blue!" and stored["score"] is None
        else:
            assert stored["score"] == 4 and stored["aspects"] == {"tone": 5}
        changed = answer(client, task["task_id"], other, key)
        assert changed.status_code == 422 and "different" in changed.json()["detail"]
        elsewhere = answer(client, task["task_id"], other, {**ann, "Idempotency-Key": "new"})
        assert elsewhere.status_code == 409
        progress = client.get(f"{API}/projects/{projects[kind]}/stats", headers=auth["root"])
        assert progress.json()["progress"]["responses"] == 1


def test_a_skip_gives_the_item_back_and_keeps_its_reason(api):
    client, auth, projects, url = api
    project = projects["revision"]
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
    reply = answer(client, task["task_id"], {"skip": True, "reason": "not my field"}, auth["ann"])
    assert reply.status_code == 201 and reply.json()["skipped"] is True, reply.text

    def work(name: str) -> list[dict[str, str]]:
        seen = []
        while True:
            nxt = client.get(f"{API}/projects/{project}/tasks/next", headers=auth[name])
            if nxt.status_code == 204:
                return seen
            seen.append(nxt.json()["item"])
            reply = answer(client, nxt.json()["task_id"], {"revision": "ok"}, auth[name])
            assert reply.status_code == 201

    # ann never sees the item again; two others still can (overlap 2).
    assert task["item"] not in work("ann")
    assert task["item"] in work("bob") and task["item"] in work("root")
    stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
    assert stats["progress"]["skipped"] == 1
    assert stats["progress"]["items_complete"] == len(REVISION_ITEMS)
    lines = client.get(f"{API}/projects/{project}/export", headers=auth["root"]).text.splitlines()
    assert len(lines) == 2 * len(REVISION_ITEMS)  # a skip is not a revision
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            skips = repo.project_skips(session, project)
    finally:
        engine.dispose()
    assert [(s.contributor, s.reason) for s in skips] == [("ann", "not my field")]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("revision", {"format": "kto"}, "its formats are jsonl, sft, trl"),
        ("revision", {"format": "arena-csv"}, "its formats are jsonl, sft, trl"),
        ("rating", {"format": "sft"}, "its formats are jsonl, csv, kto"),
        ("rating", {"format": "jsonl", "threshold": 3}, "threshold goes with format=kto"),
        ("rating", {"format": "kto", "threshold": 6}, "on the project's scale, 1 to 5"),
        ("pairwise", {"format": "csv"}, "its formats are arena-csv, jsonl, trl"),
    ],
)
def test_export_formats_that_do_not_fit_the_kind_are_422(api, kind, params, message):
    client, auth, projects, _ = api
    root = auth["root"]
    if kind == "pairwise":
        projects[kind] = client.post(f"{API}/projects", json={"name": "pw"}, headers=root).json()[
            "id"
        ]
    reply = client.get(f"{API}/projects/{projects[kind]}/export", params=params, headers=root)
    assert reply.status_code == 422 and message in reply.json()["detail"], reply.text


def test_stats_leaderboard_and_rounds_answer_every_kind(api):
    client, auth, projects, _ = api
    root = auth["root"]
    for kind, project in projects.items():
        task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
        body = {"revision": "better"} if kind == "revision" else {"score": 3}
        assert answer(client, task["task_id"], body, auth["ann"]).status_code == 201
        stats = client.get(f"{API}/projects/{project}/stats", headers=root)
        assert stats.status_code == 200 and stats.json()["agreement"] is None
        assert stats.json()["signals"]["kind"] == kind
        expected = "two different contributors" if kind == "rating" else "no agreement figure"
        assert expected in stats.json()["agreement_reason"]
        boards = {}
        for who in ("root", "ann"):
            board = client.get(f"{API}/projects/{project}/leaderboard", headers=auth[who])
            assert board.status_code == 200, board.text
            boards[who] = board.json()["contributors"]
        assert [row["votes"] for row in boards["root"]] == [1]
        assert boards["ann"][0]["gold_answered"] is None  # no closed item yet: nothing shown
        rounds = client.post(f"{API}/projects/{project}/rounds", json={}, headers=root)
        if kind == "rating":
            assert rounds.status_code == 422
            assert "need a pairwise or a revision project" in rounds.json()["detail"]
        else:  # a revision project's round fine-tunes a language model: queued for the worker
            assert rounds.status_code == 202, rounds.text
            assert rounds.json()["candidate"] == "sft"
        assert client.get(f"{API}/projects/{project}/rounds", headers=root).json() == []


def test_exports_serve_text_stored_before_the_checks(api):
    """A lone surrogate stored with SQL (as an older version could have): the task and every
    export of both kinds answer 200 with U+FFFD in its place."""
    client, auth, projects, url = api
    root = auth["root"]
    broken = f"broken {REPLACEMENT} text"
    for item in range(1, len(REVISION_ITEMS) + len(RATING_ITEMS) + 1):
        store_directly(url, item, "prompt", ["broken \ud800 text"])
        store_directly(url, item, "response_a", ["answer \udfff"])
    for kind, project in projects.items():
        task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
        assert task["item"] == {"prompt": broken, "response": f"answer {REPLACEMENT}"}
        body = {"revision": "better"} if kind == "revision" else {"score": 3}
        assert answer(client, task["task_id"], body, auth["ann"]).status_code == 201
        formats = ("jsonl", "sft", "trl") if kind == "revision" else ("jsonl", "csv", "kto")
        for fmt in formats:
            reply = client.get(
                f"{API}/projects/{project}/export", params={"format": fmt}, headers=root
            )
            assert reply.status_code == 200, (kind, fmt, reply.text)
            assert "\\ud800" not in reply.text and "\\udfff" not in reply.text
            if fmt != "csv":  # JSON Lines: as the text decodes
                rows = [json.loads(line) for line in reply.text.splitlines()]
                assert broken in json.dumps(rows, ensure_ascii=False), (kind, fmt, rows)
            else:
                assert broken in reply.text
