"""Uploaded item files are bounded once decompressed: a gzip bomb (a small ``.csv.gz`` that
inflates past the limit) gets 413 naming the limit and stores nothing, through the API and the
admin page, on SQLite and PostgreSQL. The limit is the body limit unless set apart
(``create_app(max_decompressed_bytes=...)``, ``crowdtune serve --max-decompressed-bytes``)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from crowdtune.cli import app as cli_app
from crowdtune.datasets.comparisons import ARENA_REQUIRED_COLUMNS, write_arena_csv
from crowdtune.records import Comparison, Verdict
from crowdtune.server import create_app
from crowdtune.store import make_engine, session_factory
from crowdtune.store.models import Item
from test_server_api import people
from test_server_pages import csrf_of, sign_in

API = "/api/v1"
#: The server's default body limit, which the decompressed limit follows by default.
BODY_LIMIT = 1_000_000


def gzip_bomb(inflated: int) -> bytes:
    """A gzipped arena CSV of one row whose response is ``inflated`` bytes of one letter:
    tens of kilobytes on the wire (the issue's 39 kB became a 40 MB item)."""
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=9) as out:
        out.write((",".join(ARENA_REQUIRED_COLUMNS) + '\nr0,"[""q""]","[""').encode())
        block = b"a" * 1_000_000
        for _ in range(inflated // len(block)):
            out.write(block)
        out.write(b'""]","[""b""]",1,0,0\n')
    return stream.getvalue()


def arena_gz(tmp_path: Path, rows: int, text: int = 1000) -> bytes:
    """A valid gzipped arena CSV of ``rows`` rows with responses of ``text`` characters."""
    comparisons = [
        Comparison(f"c{i}", (f"prompt {i}",), ("a" * text,), ("b" * text,), Verdict.B)
        for i in range(rows)
    ]
    return write_arena_csv(comparisons, tmp_path / "items.csv.gz").read_bytes()


def item_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count(Item.id))) or 0)
    finally:
        engine.dispose()


@pytest.fixture
def site(url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], int, str]]:
    """A client on the default limits; the auth headers; a project; the database URL."""
    auth = people(url)
    with TestClient(create_app(url)) as client:
        reply = client.post(f"{API}/projects", json={"name": "bombed"}, headers=auth["root"])
        yield client, auth, reply.json()["id"], url


def test_a_gzip_bomb_through_the_api_is_413_and_stores_nothing(site):
    client, auth, project, url = site
    bomb = gzip_bomb(40_000_000)
    assert len(bomb) < 100_000  # well under the body limit: only the decompressed size is over
    files = {"file": ("items.csv.gz", bomb, "application/gzip")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=auth["root"])
    assert reply.status_code == 413, reply.text
    detail = reply.json()["detail"]
    assert f"limit of {BODY_LIMIT} bytes" in detail and "items.csv.gz" in detail, detail
    assert item_count(url) == 0


def test_a_gzip_bomb_through_the_admin_page_is_413_and_stores_nothing(site):
    client, auth, project, url = site
    sign_in(client, auth["root"]["Authorization"].split()[1])
    page = client.get(f"/projects/{project}/admin")
    files = {"file": ("items.csv.gz", gzip_bomb(40_000_000), "application/gzip")}
    form = {"csrf_token": csrf_of(page.text)}
    reply = client.post(
        f"/projects/{project}/admin/items", files=files, data=form, follow_redirects=False
    )
    assert reply.status_code == 413, reply.text
    assert f"limit of {BODY_LIMIT} bytes" in reply.text
    assert item_count(url) == 0


def test_a_broken_gzip_upload_is_422(site):
    client, auth, project, url = site
    files = {"file": ("items.csv.gz", gzip_bomb(1_000_000)[:-200], "application/gzip")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=auth["root"])
    assert reply.status_code == 422 and "items.csv.gz" in reply.json()["detail"], reply.text
    files = {"file": ("items.csv.gz", b"not gzip at all", "application/gzip")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=auth["root"])
    assert reply.status_code == 422 and "gzip" in reply.json()["detail"], reply.text
    assert item_count(url) == 0


@pytest.mark.parametrize(
    ("settings", "accepted"),
    [
        ({}, False),  # 1 MB: the body limit
        ({"max_decompressed_bytes": 3_000_000}, True),
        ({"max_body_bytes": 3_000_000}, True),  # the decompressed limit follows the body's
        ({"max_body_bytes": 3_000_000, "max_decompressed_bytes": 500_000}, False),
    ],
)
def test_the_decompressed_limit_is_the_body_limit_unless_set(tmp_path, settings, accepted):
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    auth = people(url)
    upload = arena_gz(tmp_path, rows=1000)  # about 2 MB of CSV, a few kB gzipped
    with TestClient(create_app(url, **settings)) as client:
        reply = client.post(f"{API}/projects", json={"name": "p"}, headers=auth["root"])
        files = {"file": ("items.csv.gz", upload, "application/gzip")}
        path = f"{API}/projects/{reply.json()['id']}/items"
        reply = client.post(path, files=files, headers=auth["root"])
    assert reply.status_code == (201 if accepted else 413), reply.text
    assert item_count(url) == (1000 if accepted else 0)


def test_create_app_refuses_a_limit_below_one_byte():
    with pytest.raises(ValueError, match="max_decompressed_bytes"):
        create_app("sqlite://", max_decompressed_bytes=0)


def test_serve_passes_the_decompressed_limit_to_the_app(tmp_path, monkeypatch):
    served: list[FastAPI] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", "--db", db, "--max-decompressed-bytes", "12345"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli_app, ["serve", "--db", db, "--max-body-bytes", "777"])
    assert result.exit_code == 0, result.output
    assert [app.state.max_decompressed_bytes for app in served] == [12345, 777]
    result = runner.invoke(cli_app, ["serve", "--db", db, "--max-decompressed-bytes", "0"])
    assert result.exit_code != 0 and "max-decompressed-bytes" in result.output
