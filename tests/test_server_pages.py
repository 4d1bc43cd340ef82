"""The web pages end to end with TestClient on SQLite: sign in and out with a cookie, CSRF,
the annotation page (escaped item text, keyboard hints, votes stored once, progress), roles."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crowdtune.server import create_app
from crowdtune.server.pages.markdown import safe_markdown
from crowdtune.server.pages.web import SESSION_COOKIE
from crowdtune.store import make_engine, session_factory
from crowdtune.store.models import Response
from test_server_api import arena_csv, people

API = "/api/v1"
ITEMS = [
    {"prompt": "Say hi **loudly**", "response_a": "<script>alert(1)</script>",
     "response_b": "```\nprint('<b>')\n```\n- one\n- two", "id": "x0"},
    {"prompt": "2+2?", "response_a": "4", "response_b": "5", "gold": "a", "id": "x1"},
]  # fmt: skip


@pytest.fixture
def site(tmp_path):
    """A client on a fresh database with one project of two items; the tokens by name."""
    url = f"sqlite:///{tmp_path / 'pages.db'}"
    auth = people(url)
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    with TestClient(create_app(url)) as client:
        reply = client.post(f"{API}/projects", json={"name": "demo <p>"}, headers=auth["root"])
        project = reply.json()["id"]
        assert client.post(f"{API}/projects/{project}/items", json=ITEMS,
                           headers=auth["root"]).status_code == 201  # fmt: skip
        yield client, tokens, project, url


def sign_in(client, token):
    page = client.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/signin", data={"token": token, "csrf_token": csrf},
                       follow_redirects=False)  # fmt: skip


def page_csrf(html):
    return re.search(r'data-csrf="([^"]+)"|name="csrf_token" value="([^"]+)"', html).group(1, 2)


def csrf_of(html):
    a, b = page_csrf(html)
    return a or b


def votes_in(url):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return session.scalar(select(func.count(Response.id)))
    finally:
        engine.dispose()


def progress_of(html):
    match = re.search(r'id="answered">(\d+)</span> / <span id="total">(\d+)', html)
    return int(match.group(1)), int(match.group(2))


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(site):
    client, tokens, project, _ = site
    assert client.get("/projects", follow_redirects=False).headers["location"] == "/"
    reply = sign_in(client, tokens["ann"])
    assert reply.status_code == 303 and reply.headers["location"] == "/projects"
    cookie = next(c for c in reply.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    page = client.get("/projects")
    assert page.status_code == 200
    assert "demo &lt;p&gt;" in page.text and f"/projects/{project}/annotate" in page.text
    assert f"/projects/{project}/admin" not in page.text  # no admin links for annotators
    assert "Content-Security-Policy" in page.headers
    assert client.get("/static/annotate.js").status_code == 200

    assert client.post("/signout", follow_redirects=False).status_code == 403  # no CSRF token
    reply = client.post("/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert reply.status_code == 303
    cleared = next(c for c in reply.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert 'crowdtune_session=""' in cleared and "max-age=0" in cleared.lower()
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_bad_token_or_missing_sign_in_csrf_is_refused(site):
    client, tokens, _, _ = site
    assert sign_in(client, "not-a-token").status_code == 401
    client.get("/")
    reply = client.post("/signin", data={"token": tokens["ann"]}, follow_redirects=False)
    assert reply.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_annotate_page_escapes_votes_once_and_moves_progress(site):
    client, tokens, project, url = site
    sign_in(client, tokens["ann"])
    page = client.get(f"/projects/{project}/annotate")
    assert page.status_code == 200
    html = page.text
    assert "Say hi <strong>loudly</strong>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "<pre><code>print(&#39;&lt;b&gt;&#39;)</code></pre>" in html
    assert "<li>one</li>" in html
    assert (
        "<kbd>1</kbd> A is better" in html and "<kbd>2</kbd> B" in html and "<kbd>3</kbd>" in html
    )
    assert progress_of(html) == (0, 2)
    task_id = re.search(r"/tasks/(\d+)/vote", html).group(1)
    vote_url = f"/projects/{project}/tasks/{task_id}/vote"
    headers = {"X-CSRF-Token": csrf_of(html), "Idempotency-Key": f"task-{task_id}"}

    # the page's mechanism: JSON with the CSRF header, the session cookie, one key per task
    assert client.post(vote_url, json={"verdict": "b"}).status_code == 403  # no CSRF header
    reply = client.post(vote_url, json={"verdict": "b", "seconds": 2.0}, headers=headers)
    assert reply.status_code == 201, reply.text
    assert reply.json()["progress"] == {"answered": 1, "total": 2}
    again = client.post(vote_url, json={"verdict": "b", "seconds": 2.0}, headers=headers)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert votes_in(url) == 1

    nxt = client.get(f"/projects/{project}/next", headers={"Accept": "application/json"})
    assert nxt.status_code == 200 and nxt.json()["prompt_html"] == "<p>2+2?</p>"
    assert progress_of(client.get(f"/projects/{project}/annotate").text) == (1, 2)

    # the no-JavaScript fallback: a form post, then a redirect back to the page
    form = {"verdict": "a", "csrf_token": headers["X-CSRF-Token"]}
    next_url = f"/projects/{project}/tasks/{nxt.json()['task_id']}/vote"
    assert client.post(next_url, data={"verdict": "a"}).status_code == 403
    reply = client.post(next_url, data=form, follow_redirects=False)
    assert reply.status_code == 303
    done = client.get(reply.headers["location"]).text
    assert votes_in(url) == 2 and progress_of(done) == (2, 2)
    assert "Vote stored" in done and 'id="task" hidden' in done
    assert client.get(f"/projects/{project}/next").status_code == 204

    board = client.get(f"/projects/{project}/leaderboard")
    assert board.status_code == 200 and "<td>ann</td>" in board.text


def test_admin_page_is_for_admins_only(site, tmp_path):
    client, tokens, project, _ = site
    sign_in(client, tokens["ann"])
    reply = client.get(f"/projects/{project}/admin")
    assert reply.status_code == 403 and "Forbidden" in reply.text
    assert client.get(f"/projects/{project}/admin/export").status_code == 403

    admin = TestClient(client.app)
    sign_in(admin, tokens["root"])
    page = admin.get(f"/projects/{project}/admin")
    assert page.status_code == 200
    for fmt in ("arena-csv", "jsonl", "trl"):
        assert f"/admin/export?format={fmt}" in page.text
    assert "items</th><td>2" in page.text and "no votes yet" in page.text
    files = {"file": ("items.csv", arena_csv(tmp_path), "text/csv")}
    assert admin.post(f"/projects/{project}/admin/items", files=files).status_code == 403
    reply = admin.post(f"/projects/{project}/admin/items", files=files,
                       data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303, reply.text
    assert "Imported 2 items" in admin.get(reply.headers["location"]).text
    assert admin.get(f"/projects/{project}/admin/export?format=jsonl").status_code == 200


def test_safe_markdown_never_lets_html_through():
    html = str(safe_markdown('<img src=x onerror="alert(1)"> `<i>` **<b>x</b>**'))
    assert "<img" not in html and "<i>" not in html and "<b>" not in html
    assert "<code>&lt;i&gt;</code>" in html
