"""Generated bodies against every write route, with Hypothesis: JSON, CSV (plain and gzipped)
and forms, as an admin and as an annotator, on SQLite and PostgreSQL.

Every route that writes (project create, items import as JSON and as CSV, the API vote, the
page vote as JSON and as a form, the admin page's import, sign-in, rounds) gets bodies built
from adversarial pieces: lone surrogates, NUL, formulas, NaN and infinities, 400-digit
integers, deep nesting, wrong types, missing and unknown fields, shaped like the route's body
or not. Two properties hold for each request: no 5xx, and after a 4xx no table gained or lost
a row. The issue's payloads are explicit examples, so they are tried on every run.
Generation is derandomized: every run sends the same requests.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text

from crowdtune.datasets.comparisons import ARENA_COLUMNS
from crowdtune.server import create_app
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.repository import add_items, create_contributor, create_project

API = "/api/v1"
#: Generated requests per route and role: SQLite, PostgreSQL (a round trip costs more there).
EXAMPLES = {"sqlite": 60, "postgresql": 20}

# ---------------------------------------------------------------------------------------------
# what bodies are made of

#: Text that broke the server, or could break whoever reads an export.
NASTY_TEXT = [
    "\ud800", "\udfff", "a\ud83dz", "\x00", "NUL\x00inside", "=1+1", "@SUM(A1)",
    '=HYPERLINK("http://evil.example","x")', "-2+3", "+1", "\t=1", "\r=1", "", " ", "😀",
    "<script>alert(1)</script>", "a" * 300,
]  # fmt: skip
texts = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=12),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=6),  # surrogates too
)
plain_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
numbers = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, -(10**400), 2**63, -1]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
#: Bodies that are not what json.dumps writes: deep nesting, bare constants, broken JSON.
RAW_JSON = [
    "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, "[" * 100, "NaN", "-Infinity",
    "1" * 400, "", "null", "{", '"\\ud800"', '{"verdict": "a", "seconds": 1e400}',
]  # fmt: skip


def mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """A plausible value three times in four, else any JSON value: bodies that get past the
    first check often enough to reach the routes' real work."""
    return st.one_of(plausible, plausible, plausible, json_values)


def shaped(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy:
    """Dicts with the route's fields, each :func:`mostly` plausible; now and then a field
    missing (an optional one) or one more that the route does not know."""
    return st.fixed_dictionaries(
        {k: mostly(v) for k, v in required.items()},
        optional={k: mostly(v) for k, v in optional.items()},
    ) | st.fixed_dictionaries({**required, "surprise": json_values})


def json_bodies(shape: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """JSON documents as sent: mostly the route's shape, else any JSON value or one of
    :data:`RAW_JSON` (json.dumps writes NaN as ``NaN``, a lone surrogate as ``\\ud800``)."""
    dumped = st.one_of(shape, shape, json_values).map(lambda value: json.dumps(value).encode())
    return st.one_of(dumped, st.sampled_from(RAW_JSON).map(str.encode))


turns = st.one_of(texts, plain_texts, st.lists(texts | plain_texts, min_size=1, max_size=3))
VERDICTS = st.sampled_from(["a", "b", "tie"])
project_bodies = json_bodies(
    shaped(
        {"name": texts | plain_texts},
        {"overlap": numbers | st.integers(1, 5), "kind": st.just("pairwise") | texts},
    )
)
item_shape = shaped(
    {"prompt": turns, "response_a": turns, "response_b": turns},
    {"model_a": texts, "model_b": texts, "gold": VERDICTS, "id": texts | plain_texts},
)
item_bodies = json_bodies(st.lists(item_shape, max_size=3))
vote_shape = shaped(
    {"verdict": VERDICTS}, {"reason": texts | plain_texts, "seconds": numbers | st.floats(0, 1e4)}
)
vote_bodies = json_bodies(vote_shape)
round_bodies = json_bodies(
    shaped(
        {},
        {
            "strategy": st.sampled_from(["random", "epsilon-greedy"]),
            "scheme": st.sampled_from(["rank", "shapley"]),
            "model": st.sampled_from(["length"]),
            "n_groups": numbers,
            "seed": numbers,
        },
    )
)


def form_body(fields: dict[str, str]) -> bytes:
    """A urlencoded form as a browser (or an attacker) sends it; a lone surrogate is sent as
    its (invalid) UTF-8 bytes."""
    return urlencode(
        {name.encode("utf-8", "surrogatepass"): value.encode("utf-8", "surrogatepass")
         for name, value in fields.items()}
    ).encode()  # fmt: skip


any_fields = st.dictionaries(texts, texts | numbers.map(str), max_size=3)
vote_forms = st.one_of(
    st.fixed_dictionaries(
        {"verdict": mostly(VERDICTS).map(str)},
        optional={"seconds": (numbers | st.floats(0, 1e4)).map(str), "idempotency_key": texts,
                  "reason": texts},
    ),
    any_fields,
)  # fmt: skip
signin_forms = st.fixed_dictionaries({"token": texts | plain_texts}) | any_fields


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """An arena CSV (sometimes gzipped) of generated cells: mostly well formed (every column,
    one-hot winners, one turn per cell) around generated text, else any cells, a column
    missing now and then; encoded as UTF-8, a lone surrogate as its (invalid) bytes."""
    well_formed = draw(st.integers(0, 3)) > 0
    columns = [c for c in ARENA_COLUMNS if well_formed or draw(st.integers(0, 9)) > 0]
    rows = []
    for number in range(draw(st.integers(0, 3))):
        row = {}
        for column in columns:
            if column in ("prompt", "response_a", "response_b"):
                one_turn = st.lists(texts | plain_texts, min_size=1, max_size=1)
                cell = draw(
                    one_turn.map(json.dumps) if well_formed else one_turn.map(json.dumps) | texts
                )
            elif column.startswith("winner_"):
                cell = draw(st.sampled_from(["0", "1", "", "2", "NaN", "1" * 400]))
            elif column == "id" and well_formed:
                cell = f"row{number}-" + draw(texts)
            else:
                cell = draw(texts)
            row[column] = cell
        if well_formed:
            winner = draw(st.sampled_from(["winner_model_a", "winner_model_b", "winner_tie"]))
            row.update({c: str(int(c == winner)) for c in columns if c.startswith("winner_")})
        rows.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        return "items.csv.gz", gzip.compress(data)
    return "items.csv", data


def csv_of(rows: list[list[str]]) -> tuple[str, bytes]:
    """An arena CSV of ``rows`` (Kaggle's columns) as an example payload."""
    head = (
        "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie"
    )
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return "items.csv", (head + "\r\n" + out.getvalue()).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------
# the server under test


@dataclass
class Site:
    """A seeded server: the app's client, each role's API headers and signed-in page client,
    the project every route writes to, and an engine to count rows with."""

    client: TestClient
    api: dict[str, dict[str, str]]
    pages: dict[str, tuple[TestClient, str]]
    project: int
    engine: Engine
    backend: str

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                table: connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
                for table in inspect(connection).get_table_names()
                if table != "alembic_version"
            }


def _signed_in(client: TestClient, token: str) -> str:
    form = client.get("/").text
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    reply = client.post("/signin", data={"token": token, "csrf_token": nonce})
    assert reply.status_code == 200, reply.text
    return re.search(r'name="csrf_token" value="([^"]+)"', reply.text).group(1)  # type: ignore[union-attr]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A fresh database per backend (a SQLite file, or a PostgreSQL database dropped after the
    module) with an admin, an annotator and a project of 300 items, so votes keep finding
    tasks; no gold items, so a round is refused (422) before it trains anything."""
    backend = request.param
    if backend == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}", None
    else:
        import psycopg

        from conftest import PG_ADMIN

        name = f"crowdtune_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

        def drop() -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = {
                role: create_contributor(session, f"fuzz-{role}", role)[1]
                for role in ("admin", "annotator")
            }
            project = create_project(session, "fuzzed", overlap=2).id
            add_items(
                session,
                project,
                [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(300)],
            )
        # Limits high enough never to answer for the routes (sign-in fails on every example).
        limits = {"rate_limit_per_minute": 10**9, "failed_auth_per_minute": 10**9,
                  "failed_auth_burst": 10**9}  # fmt: skip
        with TestClient(create_app(url, **limits)) as client:
            pages = {}
            for role, token in tokens.items():
                page_client = TestClient(client.app)
                pages[role] = (page_client, _signed_in(page_client, token))
            api = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
            yield Site(client, api, pages, project, engine, backend)
    finally:
        engine.dispose()
        if drop is not None:
            drop()


# ---------------------------------------------------------------------------------------------
# the routes: how each sends a payload


def _json(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})


def _open_task(site: Site, role: str, page: bool = False) -> int:
    """An open task of ``role``'s (a new one, or 1 when nothing is left), asked for before the
    rows are counted: assignment writes a task row."""
    if page:
        reply = site.pages[role][0].get(f"/projects/{site.project}/next")
    else:
        reply = site.client.get(f"{API}/projects/{site.project}/tasks/next", headers=site.api[role])
    assert reply.status_code < 500, reply.text
    return reply.json()["task_id"] if reply.status_code == 200 else 1


def send_project(site: Site, role: str, body: bytes) -> Callable[[], httpx.Response]:
    return lambda: _json(site.client, f"{API}/projects", body, site.api[role])


def send_items(site: Site, role: str, body: bytes) -> Callable[[], httpx.Response]:
    return lambda: _json(site.client, f"{API}/projects/{site.project}/items", body, site.api[role])


def send_items_csv(site: Site, role: str, file: tuple[str, bytes]) -> Callable[[], httpx.Response]:
    path = f"{API}/projects/{site.project}/items?gold=true"
    return lambda: site.client.post(
        path, files={"file": (*file, "text/csv")}, headers=site.api[role]
    )


def send_vote(site: Site, role: str, body: bytes) -> Callable[[], httpx.Response]:
    task = _open_task(site, role)
    return lambda: _json(site.client, f"{API}/tasks/{task}/responses", body, site.api[role])


def send_page_vote(site: Site, role: str, body: bytes) -> Callable[[], httpx.Response]:
    client, csrf = site.pages[role]
    task = _open_task(site, role, page=True)
    path = f"/projects/{site.project}/tasks/{task}/vote"
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
    return lambda: _json(client, path, body, headers)


def send_page_vote_form(
    site: Site, role: str, fields: dict[str, str]
) -> Callable[[], httpx.Response]:
    client, csrf = site.pages[role]
    task = _open_task(site, role, page=True)
    body = form_body({"csrf_token": csrf, **fields})
    return lambda: client.post(
        f"/projects/{site.project}/tasks/{task}/vote",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        follow_redirects=False,
    )


def send_admin_import(
    site: Site, role: str, file: tuple[str, bytes]
) -> Callable[[], httpx.Response]:
    client, csrf = site.pages[role]
    return lambda: client.post(
        f"/projects/{site.project}/admin/items",
        files={"file": (*file, "text/csv")},
        data={"csrf_token": csrf, "gold": "true"},
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )


def send_signin(site: Site, role: str, fields: dict[str, str]) -> Callable[[], httpx.Response]:
    stranger = TestClient(site.client.app)
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', stranger.get("/").text).group(1)  # type: ignore[union-attr]
    body = form_body({**fields, "csrf_token": nonce})
    return lambda: stranger.post(
        "/signin",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


def send_round(site: Site, role: str, body: bytes) -> Callable[[], httpx.Response]:
    path = f"{API}/projects/{site.project}/rounds"
    return lambda: _json(site.client, path, body, site.api[role])


DEEP = b"[" * 5000 + b"]" * 5000
BIG = b"1" * 400
#: route -> (how to send a payload, its strategy, the issue's payloads as explicit examples)
Sender = Callable[..., Callable[[], httpx.Response]]
ROUTES: dict[str, tuple[Sender, st.SearchStrategy, list[Any]]] = {
    "projects": (send_project, project_bodies, [
        b'{"name": "p\\u0000"}', b'{"name": "\\ud800"}', b'{"name": "x", "overlap": NaN}', DEEP,
    ]),
    "items-json": (send_items, item_bodies, [
        b'[{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}]',
        b'[{"prompt": "p\\u0000", "response_a": "a", "response_b": "b"}]',
        b'[{"prompt": ["p", "q"], "response_a": ["a"], "response_b": ["b", "c"]}]',
        b'[{"prompt": "=1+1", "response_a": "@SUM(A1)", "response_b": "-2+3", "id": "=1+1"}]',
        DEEP,
    ]),
    "items-csv": (send_items_csv, csv_files(), [
        csv_of([["c1", "m", "n", '["\\ud800"]', '["a"]', '["b"]', "1", "0", "0"]]),
        csv_of([["c2\x00", "m", "n", '["p"]', '["a"]', '["b"]', "1", "0", "0"]]),
        csv_of([["c3", "m", "n", '["p"]', '["a", "b"]', '["b"]', "1", "0", "0"]]),
        csv_of([["c4", "m", "n", "[" * 5000 + "]" * 5000, '["a"]', '["b"]', "1", "0", "0"]]),
        ("big.csv.gz", gzip.compress(csv_of([["c5", "=1+1", "@SUM(A1)", '["p"]', '["a"]',
                                              '["b"]', "0", "0", "1"]])[1])),
    ]),
    "vote-api": (send_vote, vote_bodies, [
        b'{"verdict": "a", "seconds": NaN}', b'{"verdict": "a", "seconds": 1e400}',
        b'{"verdict": "a", "reason": "\\ud800"}', b'{"verdict": "a", "reason": "\\u0000"}',
        b'{"verdict": "a", "seconds": ' + BIG + b"}", DEEP,
    ]),
    "page-vote-json": (send_page_vote, vote_bodies, [
        b'{"verdict": "a", "seconds": NaN}', b'{"verdict": "a", "seconds": ' + BIG + b"}",
        b'{"verdict": "a", "seconds": 1e400}', DEEP, b'{"verdict": "\\ud800"}',
    ]),
    "page-vote-form": (send_page_vote_form, vote_forms, [
        {"verdict": "a", "seconds": BIG.decode()}, {"verdict": "a", "idempotency_key": "k\x00"},
        {"verdict": "\ud800"}, {"verdict": "a", "seconds": "nan"},
    ]),
    "admin-import": (send_admin_import, csv_files(), [
        csv_of([["c1", "m", "n", '["\\ud800"]', '["a"]', '["b"]', "1", "0", "0"]]),
        csv_of([["c3", "m", "n", '["p", "q"]', '["a"]', '["b", "c"]', "1", "0", "0"]]),
    ]),
    "signin": (send_signin, signin_forms, [{"token": "x\x00"}, {"token": "\ud800"}, {}]),
    "rounds": (send_round, round_bodies, [
        b'{"seed": NaN}', b'{"n_groups": ' + BIG + b"}", b'{"seed": 1e400}', DEEP,
    ]),
}  # fmt: skip


@pytest.mark.parametrize("role", ["admin", "annotator"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_generated_bodies_never_give_5xx_and_a_4xx_stores_nothing(
    site: Site, route: str, role: str
) -> None:
    send, payloads, examples = ROUTES[route]

    @settings(
        max_examples=EXAMPLES[site.backend],
        deadline=None,
        database=None,  # no .hypothesis folder in the checkout
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=payloads)
    def check(payload: Any) -> None:
        request = send(site, role, payload)  # any reads it needs (an open task) come first
        before = site.counts()
        reply = request()
        assert reply.status_code < 500, (route, role, payload, reply.text[:500])
        if 400 <= reply.status_code < 500:
            assert site.counts() == before, (route, role, payload, reply.status_code)

    for payload in examples:
        check = example(payload=payload)(check)
    check()
