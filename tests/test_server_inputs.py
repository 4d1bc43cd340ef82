"""Input that cannot break the server, and exports that cannot attack their reader (issue 18,
findings 1, 6 and 7), on SQLite and PostgreSQL.

- Every write route refuses a lone surrogate, a NUL, a non-finite number, an integer past 64
  bits, nesting past 32 levels and unpaired turns with a 422 that names the field (the row and
  column for a CSV), and nothing is stored.
- Text stored before these checks (put in with SQL here) is served with U+FFFD: the next task
  (API and page) and every export answer 200.
- The arena CSV export neutralises formula cells; JSONL keeps the exact text.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import re

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from crowdtune.datasets.comparisons import FORMULA_PREFIXES
from crowdtune.server import create_app
from crowdtune.server.inputs import validation_error
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.repository import create_contributor
from test_server_api import arena_csv, new_project, people
from test_server_pages import csrf_of, sign_in

API = "/api/v1"
ITEM = {"prompt": "2+2?", "response_a": "4", "response_b": "5"}
REPLACEMENT = "\ufffd"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """A fresh database: a SQLite file, or a uniquely named PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inputs.db'}"
    return request.getfixturevalue("postgres_url")


def row_counts(url: str) -> dict[str, int]:
    """Rows per table: what "nothing was stored" is checked against."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
                for table in inspect(connection).get_table_names()
                if table != "alembic_version"
            }
    finally:
        engine.dispose()


@pytest.fixture
def server(url):
    """A client on a fresh database with a project of two items; the auth headers by name,
    the project id, ann's open task and the URL."""
    auth = people(url)
    with TestClient(create_app(url)) as client:
        project = new_project(client, auth["root"], "inputs", overlap=2)
        items = [{**ITEM, "id": "i0"}, {**ITEM, "id": "i1"}]
        reply = client.post(f"{API}/projects/{project}/items", json=items, headers=auth["root"])
        assert reply.status_code == 201, reply.text
        task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"]).json()
        yield client, auth, project, task["task_id"], url


def post_raw(client: TestClient, path: str, body: str, headers: dict[str, str]):
    """POST a JSON body as written (``\\ud800`` and ``NaN`` cannot come out of ``json=``)."""
    return client.post(
        path, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )


def item(**fields: str) -> str:
    """A JSON list of one item whose fields are written as raw JSON (escapes stay as written)."""
    raw = {"prompt": '"p"', "response_a": '"a"', "response_b": '"b"', **fields}
    return "[{" + ", ".join(f'"{name}": {value}' for name, value in raw.items()) + "}]"


DEEP = "[" * 5000 + "]" * 5000
BIG = "1" * 400
#: (case, route, raw JSON body, the location the 422 must name)
REFUSED = [
    ("name NUL", "projects", '{"name": "p\\u0000"}', ["body", "name"]),
    ("name surrogate", "projects", '{"name": "\\ud800"}', ["body", "name"]),
    ("overlap 1e400", "projects", '{"name": "p", "overlap": 1e400}', ["body", "overlap"]),
    ("overlap 400 digits", "projects", f'{{"name": "p", "overlap": {BIG}}}', ["body", "overlap"]),
    ("project deep", "projects", DEEP, ["body"]),
    ("prompt surrogate", "items", item(prompt='"\\ud800"'), ["body", 0, "prompt"]),
    ("turn surrogate", "items", item(prompt='["p", "q"]', response_a='["a", "\\udfff"]',
                                     response_b='["b", "c"]'), ["body", 0, "response_a", 1]),
    ("model NUL", "items", item(model_a='"m\\u0000"'), ["body", 0, "model_a"]),
    ("id NUL", "items", item(id='"\\u0000"'), ["body", 0, "id"]),
    ("unpaired response_a", "items", item(prompt='["p", "q"]', response_b='["b", "c"]'),
     ["body", 0, "response_a"]),
    ("unpaired response_b", "items", item(response_b='["b", "c"]'), ["body", 0, "response_b"]),
    ("items deep", "items", DEEP, ["body"]),
    ("seconds NaN", "vote", '{"verdict": "a", "seconds": NaN}', ["body", "seconds"]),
    ("seconds 1e400", "vote", '{"verdict": "a", "seconds": 1e400}', ["body", "seconds"]),
    ("seconds -Infinity", "vote", '{"verdict": "a", "seconds": -Infinity}', ["body", "seconds"]),
    ("seconds 400 digits", "vote", f'{{"verdict": "a", "seconds": {BIG}}}', ["body", "seconds"]),
    ("reason surrogate", "vote", '{"verdict": "a", "reason": "\\ud800"}', ["body", "reason"]),
    ("reason NUL", "vote", '{"verdict": "a", "reason": "why\\u0000"}', ["body", "reason"]),
    ("vote deep", "vote", DEEP, ["body"]),
    ("seed NaN", "rounds", '{"seed": NaN}', ["body", "seed"]),
    ("n_groups 400 digits", "rounds", f'{{"n_groups": {BIG}}}', ["body", "n_groups"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "route", "body", "loc"), REFUSED, ids=[c[0] for c in REFUSED])
def test_api_refuses_what_could_break_it_naming_the_field(server, case, route, body, loc):
    client, auth, project, task, url = server
    path, who = {
        "projects": (f"{API}/projects", "root"),
        "items": (f"{API}/projects/{project}/items", "root"),
        "vote": (f"{API}/tasks/{task}/responses", "ann"),
        "rounds": (f"{API}/projects/{project}/rounds", "root"),
    }[route]
    before = row_counts(url)
    reply = post_raw(client, path, body, auth[who])
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"] == loc
    assert row_counts(url) == before


def test_a_nul_in_a_header_or_query_string_is_refused(server):
    client, auth, project, task, url = server
    before = row_counts(url)
    reply = client.post(
        f"{API}/tasks/{task}/responses",
        json={"verdict": "a"},
        headers={**auth["ann"], "Idempotency-Key": "key\x00"},
    )
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == [
        "header",
        "idempotency-key",
    ]
    reply = client.get(f"{API}/projects/{project}/export?format=%00", headers=auth["root"])
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["query", "format"]
    assert row_counts(url) == before


def bad_csv(tmp_path, row: int, column: str, cell: str) -> bytes:
    """An arena CSV of three rows whose ``row`` has ``cell`` in ``column``."""
    frame = list(csv.DictReader(io.StringIO(arena_csv(tmp_path, ids=("c0", "c1", "c2")).decode())))
    frame[row - 1][column] = cell
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(frame[0]))
    writer.writeheader()
    writer.writerows(frame)
    return out.getvalue().encode()


CSV_REFUSED = [
    (2, "prompt", '["\\ud800"]', "lone surrogate"),
    (3, "response_b", '["fine", "\\u0000"]', "NUL"),
    (1, "id", "c\x000", "NUL"),
    (2, "model_a", "m\x00", "NUL"),
    (2, "prompt", "[" * 5000 + "]" * 5000, "nested deeper"),
    (3, "response_a", "[NaN]", "not a finite number"),
    (2, "response_b", '["one", "two"]', "2 turn(s)"),
]


@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "csv.gz"])
@pytest.mark.parametrize(("row", "column", "cell", "problem"), CSV_REFUSED)
def test_csv_imports_refuse_bad_cells_naming_row_and_column(
    server, tmp_path, gzipped, row, column, cell, problem
):
    client, auth, project, _, url = server
    data = bad_csv(tmp_path, row, column, cell)
    name = "bad.csv.gz" if gzipped else "bad.csv"
    files = {"file": (name, gzip.compress(data) if gzipped else data, "text/csv")}
    before = row_counts(url)
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=auth["root"])
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert f"{name}, data row {row}, column {column!r}" in detail and problem in detail
    assert row_counts(url) == before


def test_pages_refuse_what_could_break_them(server, tmp_path):
    """The page vote (JSON and form), the admin import and sign-in: the issue's payloads."""
    client, auth, project, _, url = server
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    sign_in(client, tokens["bob"])
    page = client.get(f"/projects/{project}/annotate")
    task = re.search(r"/tasks/(\d+)/vote", page.text).group(1)
    path = f"/projects/{project}/tasks/{task}/vote"
    csrf = {"X-CSRF-Token": csrf_of(page.text)}
    before = row_counts(url)
    for body, loc in [
        ('{"verdict": "a", "seconds": NaN}', ["body", "seconds"]),
        (f'{{"verdict": "a", "seconds": {BIG}}}', ["body", "seconds"]),
        ('{"verdict": "a", "seconds": 1e400}', ["body", "seconds"]),
        (DEEP, ["body"]),
        ('{"verdict": "\\ud800"}', ["body", "verdict"]),
    ]:
        reply = post_raw(client, path, body, csrf)
        assert reply.status_code == 422, (body[:40], reply.text)
        assert reply.json()["detail"][0]["loc"] == loc
    form = {"verdict": "a", "csrf_token": csrf["X-CSRF-Token"]}
    reply = client.post(path, data={**form, "idempotency_key": "k\x00"}, follow_redirects=False)
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == [
        "body",
        "idempotency_key",
    ]
    reply = client.post(path, data={**form, "seconds": BIG}, follow_redirects=False)
    assert reply.status_code == 422
    assert row_counts(url) == before

    admin = TestClient(client.app)
    sign_in(admin, tokens["root"])  # stores a session
    token = csrf_of(admin.get(f"/projects/{project}/admin").text)
    before = row_counts(url)
    files = {"file": ("bad.csv", bad_csv(tmp_path, 2, "prompt", '["\\ud800"]'), "text/csv")}
    reply = admin.post(
        f"/projects/{project}/admin/items",
        files=files,
        data={"csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert reply.status_code == 422
    assert "bad.csv, data row 2, column 'prompt'" in reply.json()["detail"]
    stranger = TestClient(client.app)
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', stranger.get("/").text).group(1)
    reply = stranger.post("/signin", data={"token": "x\x00", "csrf_token": nonce})
    assert reply.status_code == 422
    assert row_counts(url) == before


def vote_all(client: TestClient, project: int, auth: dict[str, str], verdict: str) -> None:
    """Answer every task the project has left for ``auth`` with ``verdict``."""
    while True:
        task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth)
        if task.status_code == 204:
            return
        assert task.status_code == 200, task.text
        path = f"{API}/tasks/{task.json()['task_id']}/responses"
        reply = client.post(path, json={"verdict": verdict}, headers=auth)
        assert reply.status_code == 201, reply.text


def store_directly(url: str, item_id: int, column: str, value: object) -> None:
    """Put a JSON value into an item's column with SQL, as an older version could have."""
    engine = make_engine(url)
    cast = "CAST(:value AS JSON)" if engine.dialect.name == "postgresql" else ":value"
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"UPDATE item SET {column} = {cast} WHERE id = :id"),
                {"value": json.dumps(value), "id": item_id},
            )
    finally:
        engine.dispose()


def test_text_stored_before_the_checks_is_served_with_replacement_characters(server):
    """A lone surrogate stored by an older version (here with SQL): the next task (API and
    pages) and every export answer 200 with U+FFFD in its place; an item with unpaired turns
    is left out of the TRL export (counted in ``X-Left-Out``), never a 500."""
    client, auth, project, task, url = server
    for item in (1, 2):
        store_directly(url, item, "prompt", ["broken \ud800 text"])
    store_directly(url, 1, "response_a", ["fine", "\udfff"])  # 2 turns: unpaired too
    reply = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["ann"])
    assert reply.status_code == 200, reply.text
    shown = reply.json()
    assert shown["task_id"] == task
    assert shown["item"]["prompt"] == f"broken {REPLACEMENT} text"
    assert shown["item"]["response_a"] == f"fine\n\n{REPLACEMENT}"

    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    sign_in(client, tokens["bob"])
    page = client.get(f"/projects/{project}/annotate")
    assert page.status_code == 200 and f"broken {REPLACEMENT} text" in page.text
    nxt = client.get(f"/projects/{project}/next")
    assert nxt.status_code == 200 and REPLACEMENT in nxt.json()["prompt_html"]

    for name in ("ann", "bob"):
        vote_all(client, project, auth[name], "b")
    exports = {}
    for fmt in ("arena-csv", "jsonl", "trl"):
        reply = client.get(
            f"{API}/projects/{project}/export", params={"format": fmt}, headers=auth["root"]
        )
        assert reply.status_code == 200, (fmt, reply.text)
        exports[fmt] = reply
        assert "\\ud800" not in reply.text
    assert f"broken {REPLACEMENT} text" in exports["arena-csv"].text
    votes = [json.loads(line) for line in exports["jsonl"].text.splitlines()]
    assert [v["prompt"] for v in votes] == [[f"broken {REPLACEMENT} text"]] * 4
    trl = exports["trl"].text.splitlines()
    assert len(trl) == 2 and exports["trl"].headers["X-Left-Out"] == "2"


def test_exports_never_fail_on_what_is_stored(server):
    """Ids an export makes that collide (an id-less item is ``item-{row id}``, which an
    imported id may be too), an item stored with no turns at all: every export answers 200."""
    client, auth, project, _, url = server
    items = [ITEM, {**ITEM, "id": "item-3"}]  # item 3 has no id; item 4 is called item-3
    reply = client.post(f"{API}/projects/{project}/items", json=items, headers=auth["root"])
    assert reply.status_code == 201, reply.text
    for column in ("prompt", "response_a", "response_b"):
        store_directly(url, 2, column, [])
    for name in ("ann", "bob"):
        vote_all(client, project, auth[name], "a")
    exports = {}
    for fmt in ("arena-csv", "jsonl", "trl"):
        exports[fmt] = client.get(
            f"{API}/projects/{project}/export", params={"format": fmt}, headers=auth["root"]
        )
        assert exports[fmt].status_code == 200, (fmt, exports[fmt].text)
    ids = [json.loads(line)["id"] for line in exports["jsonl"].text.splitlines()]
    assert len(ids) == len(set(ids)) == 8
    assert {"item-3/ann", "item-3/ann#2", "item-3/bob", "item-3/bob#2"} <= set(ids)
    assert exports["trl"].headers["X-Left-Out"] == "2"  # item 2's votes: no turns


FORMULAS = ["=1+1", "@SUM(A1)", '=HYPERLINK("http://evil.example","x")', "-2+3", "+1"]
VOTER = '=HYPERLINK("http://evil.example","x")'  # a contributor's name: the annotator column


def test_the_arena_csv_export_neutralises_formula_cells(url):
    """Formulas in the id, model, annotator (contributor name), source (project name), prompt
    and responses: no cell of the arena CSV export (API or admin page) begins like a formula;
    the JSONL export keeps the exact text."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            root = create_contributor(session, "root", "admin")[1]
            voter = create_contributor(session, VOTER)[1]
    finally:
        engine.dispose()
    root_auth, voter_auth = ({"Authorization": f"Bearer {t}"} for t in (root, voter))
    with TestClient(create_app(url)) as client:
        project = new_project(client, root_auth, "@SUM(A1)", overlap=1)
        items = [
            {"prompt": f, "response_a": FORMULAS[i - 1], "response_b": [FORMULAS[i - 2]],
             "model_a": f, "model_b": FORMULAS[i - 3], "id": f}
            for i, f in enumerate(FORMULAS)
        ]  # fmt: skip
        reply = client.post(f"{API}/projects/{project}/items", json=items, headers=root_auth)
        assert reply.status_code == 201, reply.text
        vote_all(client, project, voter_auth, "a")
        api = client.get(f"{API}/projects/{project}/export?format=arena-csv", headers=root_auth)
        sign_in(client, root)
        page = client.get(f"/projects/{project}/admin/export?format=arena-csv")
        jsonl = client.get(f"{API}/projects/{project}/export?format=jsonl", headers=root_auth)
    for reply in (api, page):
        assert reply.status_code == 200, reply.text
        rows = list(csv.DictReader(io.StringIO(reply.text)))
        assert len(rows) == len(FORMULAS)
        cells = [cell for row in rows for cell in row.values()]
        assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]
        assert {row["id"] for row in rows} == {f"'{f}/{VOTER}" for f in FORMULAS}
        assert {row["model_a"] for row in rows} == {f"'{f}" for f in FORMULAS}
        assert {row["annotator"] for row in rows} == {f"'{VOTER}"}
        assert {row["source"] for row in rows} == {"'@SUM(A1)"}
        assert {json.loads(row["prompt"])[0] for row in rows} == set(FORMULAS)
    votes = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {v["model_a"] for v in votes} == set(FORMULAS)
    assert {v["source"] for v in votes} == {"@SUM(A1)"}


def test_the_validation_error_body_is_always_json():
    """What pydantic refuses is echoed back in the 422; a NaN or a lone surrogate there made
    FastAPI's own handler fail (500)."""
    exc = RequestValidationError(
        [
            {"type": "finite_number", "loc": ("body", "seconds"), "input": float("nan")},
            {"type": "string_type", "loc": ("body", "reason"), "input": "\ud800"},
        ]
    )
    reply = asyncio.run(validation_error(None, exc))  # type: ignore[arg-type]
    assert reply.status_code == 422
    detail = json.loads(reply.body)["detail"]
    assert [d["input"] for d in detail] == [None, REPLACEMENT]
