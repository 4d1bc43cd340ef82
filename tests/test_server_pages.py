"""The web pages end to end with TestClient on SQLite: sign in and out with a cookie, CSRF,
the annotation page of each project kind (escaped item text, keyboard hints, answers stored
once, what the submit endpoint refuses, the form fallback, progress), roles."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crowdtune.crowd.signals import rating_agreement
from crowdtune.records import ratings_frame
from crowdtune.server import create_app
from crowdtune.server.pages import admin
from crowdtune.server.pages.answers import scale_buttons, scale_hint
from crowdtune.server.pages.markdown import safe_markdown
from crowdtune.server.pages.web import SESSION_COOKIE
from crowdtune.store import make_engine, session_factory
from crowdtune.store import repository as repo
from crowdtune.store.models import Item, Response, Task
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


# ---------------------------------------------------------------------------------------------
# revision and rating projects

REVISIONS = [
    {"prompt": "Name a colour", "response": "Red <b>is</b> one.\nSecond line.", "id": "r0"},
    {"prompt": "Name a fruit", "response": "Apple.", "id": "r1"},
]
RATINGS = [
    {"prompt": "2+2?", "response": "It is **4**.", "id": "s0"},
    {"prompt": "3+3?", "response": "6", "id": "s1"},
]


@pytest.fixture
def kinds_site(tmp_path):
    """A client on a fresh database with a revision project, one whose editor starts empty, a
    rating project (scale 1–7) and a pairwise one; the tokens by name, the project ids by name,
    the database URL."""
    url = f"sqlite:///{tmp_path / 'kinds.db'}"
    auth = people(url)
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            made = {
                "revise": repo.create_project(session, "revise", kind="revision"),
                "blank": repo.create_project(
                    session, "blank", kind="revision", editor_prefill=False
                ),
                "rate": repo.create_project(session, "rate", kind="rating", scale=(1, 7)),
                "pair": repo.create_project(session, "pair"),
            }
            repo.add_items(session, made["revise"].id, REVISIONS)
            repo.add_items(session, made["blank"].id, REVISIONS[:1])
            repo.add_items(session, made["rate"].id, RATINGS)
            repo.add_items(session, made["pair"].id, ITEMS[:1])
            projects = {name: project.id for name, project in made.items()}
    finally:
        engine.dispose()
    with TestClient(create_app(url)) as client:
        yield client, tokens, projects, url


def answers_in(url, project_id):
    """(revision, score, skipped, reason) of every response in a project, oldest first."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Response.revision, Response.score, Response.skipped, Response.reason)
                .join(Task, Response.task_id == Task.id)
                .join(Item, Task.item_id == Item.id)
                .where(Item.project_id == project_id)
                .order_by(Response.id)
            ).all()
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def open_task(client, project):
    """The annotation page of a project: its HTML, the task's submit URL and JSON headers."""
    html = client.get(f"/projects/{project}/annotate").text
    task_id = re.search(r'data-task="(\d+)"', html).group(1)
    headers = {"X-CSRF-Token": csrf_of(html), "Idempotency-Key": f"task-{task_id}",
               "Accept": "application/json"}  # fmt: skip
    return html, f"/projects/{project}/tasks/{task_id}/vote", headers


def test_projects_page_names_each_kind(kinds_site):
    client, tokens, projects, _ = kinds_site
    sign_in(client, tokens["ann"])
    html = client.get("/projects").text
    kinds = re.findall(r'<td class="kind-cell">([^<]+)</td>', html)
    assert sorted(kinds) == ["pairwise", "rating (1–7)", "revision", "revision"]


def test_revision_page_shows_the_answer_in_an_editor_and_stores_a_revision(kinds_site):
    client, tokens, projects, url = kinds_site
    sign_in(client, tokens["ann"])
    html, submit, headers = open_task(client, projects["revise"])
    original = REVISIONS[0]["response"]
    assert "<p>Name a colour</p>" in html
    assert "Red &lt;b&gt;is&lt;/b&gt; one." in html and "<b>is</b>" not in html  # escaped
    # The editor starts with the answer (its line break after the tag is the parser's), the
    # diff has the original, the counter the length and the limit.
    editor = re.search(r'<textarea id="editor"[^>]*>\n(.*?)</textarea>', html, re.S)
    assert editor.group(1) == "Red &lt;b&gt;is&lt;/b&gt; one.\nSecond line."
    assert 'data-original="Red &lt;b&gt;is&lt;/b&gt; one.\nSecond line."' in html
    assert f'<span id="count">{len(original)}</span> / 20,000 characters' in html
    assert 'src="/static/worddiff.js"' in html and "<script>" not in html  # no inline script
    assert 'popovertarget="skip-box"' in html and 'name="reason"' in html

    nxt = client.get(f"/projects/{projects['revise']}/next").json()
    assert nxt["kind"] == "revision" and nxt["original"] == nxt["prefill"] == original
    assert nxt["response_html"] == "<p>Red &lt;b&gt;is&lt;/b&gt; one.<br>\nSecond line.</p>"

    reply = client.post(submit, json={"revision": "Red is one.", "seconds": 3}, headers=headers)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["revision"] == "Red is one." and body["message"] == "Revision stored"
    assert body["progress"] == {"answered": 1, "total": 2}
    again = client.post(submit, json={"revision": "Red is one.", "seconds": 3}, headers=headers)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert answers_in(url, projects["revise"]) == [("Red is one.", None, False, None)]


def test_editor_starts_empty_when_the_project_says_so(kinds_site):
    client, tokens, projects, _ = kinds_site
    sign_in(client, tokens["ann"])
    html, _, _ = open_task(client, projects["blank"])
    assert re.search(r'<textarea id="editor"[^>]*>\n</textarea>', html)
    assert 'data-original="Red &lt;b&gt;is&lt;/b&gt; one.\nSecond line."' in html
    nxt = client.get(f"/projects/{projects['blank']}/next").json()
    assert nxt["prefill"] == "" and nxt["original"] == REVISIONS[0]["response"]


def test_submit_refuses_what_does_not_fit(kinds_site):
    client, tokens, projects, url = kinds_site
    sign_in(client, tokens["ann"])
    _, submit, headers = open_task(client, projects["revise"])
    _, rate_submit, rate_headers = open_task(client, projects["rate"])

    def refused(url_, body, status=422, headers_=headers):
        reply = client.post(url_, json=body, headers=headers_)
        assert reply.status_code == status, reply.text
        return reply.json()["detail"]

    no_csrf = {"Idempotency-Key": headers["Idempotency-Key"], "Accept": "application/json"}
    assert "CSRF" in refused(submit, {"revision": "x"}, 403, no_csrf)
    assert "send 'revision', not 'score'" in refused(submit, {"score": 5})
    assert "send 'revision', not 'verdict'" in refused(submit, {"verdict": "a"})
    assert refused(submit, {"revision": "  \n"}) == "revision must be a non-empty text"
    assert "at most 20000 characters" in refused(submit, {"revision": "x" * 20_001})
    assert refused(submit, {"skip": True}).startswith("reason: say why")
    assert refused(submit, {"skip": True, "reason": "  "}).startswith("reason: say why")
    assert "at most 500" in refused(submit, {"skip": True, "reason": "x" * 501})
    assert "exactly one" in refused(submit, {"revision": "x", "skip": True, "reason": "y"})
    assert "send 'score', not 'revision'" in refused(rate_submit, {"revision": "x"}, 422,
                                                     rate_headers)  # fmt: skip
    assert "from 1 to 7" in refused(rate_submit, {"score": 9}, 422, rate_headers)
    assert "number" in refused(rate_submit, {"score": "five"}, 422, rate_headers)
    # a task of another project than the URL's is not found
    other = submit.replace(f"/projects/{projects['revise']}/", f"/projects/{projects['pair']}/")
    assert "no task" in refused(other, {"revision": "x"}, 404)
    assert answers_in(url, projects["revise"]) == answers_in(url, projects["rate"]) == []


def test_rating_and_skips_by_json_and_by_form(kinds_site):
    client, tokens, projects, url = kinds_site
    sign_in(client, tokens["ann"])
    html, submit, headers = open_task(client, projects["rate"])
    assert re.findall(r'name="score" value="(\d+)"', html) == [str(n) for n in range(1, 8)]
    assert "a score&#39;s number presses it" in html and "It is <strong>4</strong>." in html

    reply = client.post(submit, json={"score": 6, "seconds": 1.5}, headers=headers)
    assert reply.status_code == 201 and reply.json()["message"] == "Score stored: 6"
    # the form fallback: a skip without a reason is refused, with one it is stored
    html, submit, _ = open_task(client, projects["rate"])
    form = {"csrf_token": csrf_of(html), "idempotency_key": "k-1", "skip": "true"}
    assert client.post(submit, data=form).status_code == 422
    assert client.post(submit, data={**form, "reason": "unsure"}).status_code == 200  # redirected
    done = client.get(f"/projects/{projects['rate']}/annotate")
    assert 'id="task" hidden' in done.text and progress_of(done.text) == (2, 2)
    assert answers_in(url, projects["rate"]) == [(None, 6.0, False, None),
                                                 (None, None, True, "unsure")]  # fmt: skip

    # a revision by form: CRLF line breaks become LF; the page then says what was stored
    html, submit, _ = open_task(client, projects["revise"])
    form = {"csrf_token": csrf_of(html), "idempotency_key": "k-2", "revision": "a\r\nb"}
    assert client.post(submit, data={"revision": "a"}).status_code == 403  # no CSRF token
    reply = client.post(submit, data=form, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"].endswith("?voted=revision")
    assert "Revision stored" in client.get(reply.headers["location"]).text
    assert client.post(submit, data={**form, "revision": ""}).status_code == 422
    # a skip by JSON; the item goes back to the pool, and progress counts the skip
    html, submit, headers = open_task(client, projects["revise"])
    reply = client.post(submit, json={"skip": True, "reason": "not my field"}, headers=headers)
    assert reply.status_code == 201 and reply.json()["skipped"] is True
    assert reply.json()["progress"] == {"answered": 2, "total": 2}
    assert answers_in(url, projects["revise"]) == [("a\nb", None, False, None),
                                                   (None, None, True, "not my field")]  # fmt: skip
    assert "Skipped" in client.get(f"/projects/{projects['revise']}/annotate?voted=skip").text
    # only known keys say something
    page = client.get(f"/projects/{projects['revise']}/annotate?voted=<b>x</b>").text
    assert re.search(r'id="ack"[^>]*></p>', page)


@pytest.mark.parametrize(
    ("scale", "keys", "hint"),
    [
        ((1, 7), "1234567", "a score's number presses it"),
        ((0, 5), "012345", "a score's number presses it"),
        ((-3, 3), "1234567", "the key shown on a score presses it"),
        ((1, 10), "123456789-", "a score's number presses it; Tab and the arrow keys"),
        ((0, 10), "0123456789-", "a score's number presses it; Tab and the arrow keys"),
        ((1, 12), None, "type the score"),
    ],
)
def test_scale_buttons_and_their_keys(scale, keys, hint):
    buttons = scale_buttons(scale)
    if keys is None:
        assert buttons is None
    else:
        assert [b["score"] for b in buttons] == list(range(scale[0], scale[1] + 1))
        assert "".join(b["key"] or "-" for b in buttons) == keys
    assert scale_hint(buttons).startswith(hint)


def test_admin_page_shows_the_kind_settings_and_a_place_for_quality_signals(
    kinds_site, monkeypatch
):
    client, tokens, projects, url = kinds_site
    sign_in(client, tokens["root"])
    rate = client.get(f"/projects/{projects['rate']}/admin").text
    assert "<tr><th>kind</th><td>rating</td></tr>" in rate
    assert "<tr><th>scale</th><td>1 to 7</td></tr>" in rate
    assert 'id="signals"' in rate and "<h3>Agreement of the ratings</h3>" in rate
    assert "no ratings" in rate  # the reason, until there are some
    assert "Crowd-SFT rounds" not in rate and "Arena CSV" not in rate  # pairwise only
    blank = client.get(f"/projects/{projects['blank']}/admin").text
    assert "<tr><th>editor</th><td>starts empty</td></tr>" in blank and "<h3>Edits</h3>" in blank
    pair = client.get(f"/projects/{projects['pair']}/admin").text
    assert "Crowd-SFT rounds" in pair and 'id="signals"' not in pair

    # Real ratings by two raters: the page shows the alpha crowd.signals computes for them.
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rated = repo.create_project(session, "rated", kind="rating", overlap=2).id
            repo.add_items(session, rated, RATINGS)
            for name, scores in (("ann", [2, 6]), ("bob", [3, 6])):
                person = repo.contributor_by_name(session, name)
                for score in scores:
                    task = repo.next_task(session, rated, person.id)
                    repo.submit_response(session, task.id, person.id, score=score)
            frame = ratings_frame(repo.project_ratings(session, rated))
    finally:
        engine.dispose()
    result = rating_agreement(frame, n_bootstrap=0).to_dict()
    page = client.get(f"/projects/{rated}/admin").text
    alpha = result["krippendorff_alpha_interval"]["estimate"]
    assert f"<tr><th>krippendorff alpha interval</th><td>{alpha:.3f} (CI" in page
    assert "<caption>raters</caption>" in page and "<td>bob</td>" in page
    board = client.get(f"/projects/{rated}/leaderboard").text
    assert "<th>Ratings</th>" in board and "α interval vs others" in board
    assert "Agrees with majority" not in board and "<td>ann</td>" in board

    # A contributor's name is escaped in the tables.
    monkeypatch.setattr(
        admin, "quality_signals", lambda *args: {"Agreement": {"raters": [{"c": "x<i>"}]}}
    )
    page = client.get(f"/projects/{projects['rate']}/admin").text
    assert "<td>x&lt;i&gt;</td>" in page


def test_signal_sections_lay_out_values_estimates_and_tables():
    assert admin.signal_sections(None) == [] and admin.signal_sections({}) == []
    (section,) = admin.signal_sections({
        "Gold": {"n_gold": 3, "accuracy": 2 / 3, "reason": None, "ok": True,
                 "alpha": {"estimate": 0.5, "ci_low": 0.25, "ci_high": 0.75},
                 "contributors": [{"contributor": "ann", "accuracy": 1.0},
                                  {"contributor": "bob", "accuracy": float("nan")}]},
    })  # fmt: skip
    assert section["title"] == "Gold"
    assert section["values"] == [
        ("n gold", "3"), ("accuracy", "0.667"), ("reason", "–"), ("ok", "yes"),
        ("alpha", "0.500 (CI 0.250 to 0.750)"),
    ]  # fmt: skip
    assert section["tables"] == [{"title": "contributors", "columns": ["contributor", "accuracy"],
                                  "rows": [["ann", "1.000"], ["bob", "–"]]}]  # fmt: skip
