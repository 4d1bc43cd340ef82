"""Sessions apart from tokens, and the token lifecycle, on SQLite and PostgreSQL: signing out
ends the session (its cookie and CSRF token stop working), sessions end when idle and at their
absolute expiry (a clock the test moves), ``crowdtune users revoke``, ``users token --rotate``
and ``--expires-days`` reach the API, the pages and the token cache, and migration 0003
upgrades a database of 0002 with its data."""

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from crowdtune.cli.db import users_app
from crowdtune.server import create_app
from crowdtune.server.auth import Caller, TokenCache
from crowdtune.server.pages.web import SESSION_COOKIE, csrf_token
from crowdtune.store import (
    CredentialError,
    NotFoundError,
    downgrade,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from crowdtune.store import repository as repo
from crowdtune.store.models import Contributor, WebSession
from test_server_api import API, people
from test_server_pages import ITEMS, csrf_of, sign_in, votes_in


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a uniquely named PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    return request.getfixturevalue("postgres_url")


class Clock:
    """The time the app sees; a test moves it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def site(url):
    """A client (clock moved by the test) on a database with one project of two items; the
    tokens by name."""
    auth = people(url)
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    clock = Clock()
    with TestClient(create_app(url, clock=clock)) as client:
        reply = client.post(f"{API}/projects", json={"name": "demo"}, headers=auth["root"])
        project = reply.json()["id"]
        reply = client.post(f"{API}/projects/{project}/items", json=ITEMS, headers=auth["root"])
        assert reply.status_code == 201
        yield client, tokens, project, url, clock


def cli(url, *args):
    app = typer.Typer()
    app.add_typer(users_app, name="users")
    result = CliRunner().invoke(app, ["users", *args, "--db", url])
    return result


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def stored(url, query):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return session.execute(query).all()
    finally:
        engine.dispose()


def signed_in_page(client, token):
    """Sign in; the cookie's session id, the projects page's CSRF token."""
    assert sign_in(client, token).status_code == 303
    page = client.get("/projects")
    assert page.status_code == 200
    return client.cookies[SESSION_COOKIE], csrf_of(page.text)


def test_the_cookie_carries_a_session_id_stored_hashed_never_the_token(site):
    client, tokens, _, url, _ = site
    session_id, csrf = signed_in_page(client, tokens["ann"])
    assert session_id != tokens["ann"] and len(session_id) >= 40
    assert csrf == csrf_token(session_id) and tokens["ann"] not in csrf
    rows = stored(url, select(WebSession.id_hash, WebSession.expires_at, WebSession.created_at))
    assert [row.id_hash for row in rows] == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert rows[0].expires_at - rows[0].created_at == timedelta(hours=12)
    # A second sign-in is a second session with its own id.
    other = TestClient(client.app)
    assert signed_in_page(other, tokens["ann"])[0] != session_id


def test_sign_out_ends_the_session_its_cookie_and_its_csrf_token(site):
    client, tokens, project, url, _ = site
    session_id, csrf = signed_in_page(client, tokens["ann"])
    html = client.get(f"/projects/{project}/annotate").text
    task_id = re.search(r"/tasks/(\d+)/vote", html).group(1)
    vote_url = f"/projects/{project}/tasks/{task_id}/vote"
    assert (
        client.post("/signout", data={"csrf_token": csrf}, follow_redirects=False).status_code
        == 303
    )
    assert stored(url, select(WebSession.id)) == []

    # The old cookie, sent again (a copy kept by whoever saw it), opens nothing and votes nothing.
    def replay(method, path, **kwargs):
        client.cookies.set(SESSION_COOKIE, session_id, domain="testserver.local")
        return client.request(method, path, follow_redirects=False, **kwargs)

    for path in ("/projects", f"/projects/{project}/annotate", f"/projects/{project}/leaderboard"):
        reply = replay("GET", path)
        assert reply.status_code == 303 and reply.headers["location"] == "/", path
    reply = replay("GET", f"/projects/{project}/next", headers={"Accept": "application/json"})
    assert reply.status_code == 401
    headers = {"X-CSRF-Token": csrf, "Idempotency-Key": "after-sign-out"}
    assert replay("POST", vote_url, json={"verdict": "a"}, headers=headers).status_code == 401
    form = {"verdict": "a", "csrf_token": csrf}
    assert replay("POST", vote_url, data=form).status_code == 401
    assert replay("POST", "/signout", data={"csrf_token": csrf}).status_code == 401
    assert votes_in(url) == 0

    # Signed in again: a new session, with which the old CSRF token is refused.
    new_id, new_csrf = signed_in_page(client, tokens["ann"])
    assert new_id != session_id and new_csrf != csrf
    assert client.post(vote_url, json={"verdict": "a"}, headers=headers).status_code == 403
    headers["X-CSRF-Token"] = new_csrf
    assert client.post(vote_url, json={"verdict": "a"}, headers=headers).status_code == 201
    assert votes_in(url) == 1


def test_a_session_ends_when_idle_and_at_its_absolute_expiry(site):
    client, tokens, _, url, clock = site
    signed_in_page(client, tokens["ann"])
    # Used every 50 minutes, it lives past the 1 h idle timeout...
    for _ in range(3):
        clock.advance(minutes=50)
        assert client.get("/projects", follow_redirects=False).status_code == 200
    # ...but not 61 minutes unused.
    clock.advance(minutes=61)
    reply = client.get("/projects", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    assert SESSION_COOKIE not in client.cookies  # the stale cookie is cleared

    signed_in_page(client, tokens["ann"])
    for _ in range(14):  # 11 h 40 min, never idle
        clock.advance(minutes=50)
        assert client.get("/projects", follow_redirects=False).status_code == 200
    clock.advance(minutes=21)  # 12 h 01 min after sign-in
    assert client.get("/projects", follow_redirects=False).status_code == 303
    # Sign-in clears sessions that have ended.
    signed_in_page(client, tokens["ann"])
    assert len(stored(url, select(WebSession.id))) == 1


def test_session_lifetimes_are_settings(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match="idle_timeout must be a positive duration"):
        create_app(url, session_idle_minutes=0)
    with pytest.raises(ValueError, match="max_age must be a positive duration"):
        create_app(url, session_hours=-1)
    policy = create_app(url, session_hours=1, session_idle_minutes=5).state.session_policy
    assert (policy.max_age, policy.idle_timeout) == (timedelta(hours=1), timedelta(minutes=5))


def test_revoke_through_the_cli_ends_api_access_and_sessions(site):
    client, tokens, project, url, _ = site
    signed_in_page(client, tokens["ann"])
    next_task = f"{API}/projects/{project}/tasks/next"
    assert client.get(next_task, headers=bearer(tokens["ann"])).status_code == 200  # now cached

    result = cli(url, "revoke", "--name", "ann")
    assert result.exit_code == 0, result.output
    assert "revoked the token of annotator 'ann'" in result.stdout
    assert "ended 1 session(s)" in result.stdout and "10 s" in result.stdout
    # In this process the token cache forgot the token at once.
    reply = client.get(next_task, headers=bearer(tokens["ann"]))
    assert reply.status_code == 401 and "revoked" in reply.json()["detail"]
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/projects", follow_redirects=False).status_code == 303
    reply = sign_in(TestClient(client.app), tokens["ann"])
    assert reply.status_code == 401 and "This token was revoked on" in reply.text
    # Others are untouched.
    assert client.get(next_task, headers=bearer(tokens["bob"])).status_code == 200

    status = cli(url, "token", "--name", "ann")
    assert status.exit_code == 0 and "this token was revoked" in status.stdout
    assert cli(url, "revoke", "--name", "nobody").exit_code == 2


def test_rotate_through_the_cli_replaces_the_token_and_ends_sessions(site):
    client, tokens, project, url, _ = site
    signed_in_page(client, tokens["ann"])
    next_task = f"{API}/projects/{project}/tasks/next"
    assert client.get(next_task, headers=bearer(tokens["ann"])).status_code == 200
    assert cli(url, "revoke", "--name", "ann").exit_code == 0

    result = cli(url, "token", "--name", "ann", "--rotate")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip().splitlines()[-1]
    assert new != tokens["ann"] and "the old one no longer works" in result.stdout
    assert client.get(next_task, headers=bearer(tokens["ann"])).status_code == 401
    assert client.get(next_task, headers=bearer(new)).status_code == 200  # revocation lifted
    assert client.get("/projects", follow_redirects=False).status_code == 303
    assert signed_in_page(client, new)
    assert sign_in(TestClient(client.app), tokens["ann"]).status_code == 401

    status = cli(url, "token", "--name", "ann")
    assert status.exit_code == 0 and "the token works" in status.stdout
    failed = cli(url, "token", "--name", "ann", "--expires-days", "3")
    assert failed.exit_code == 2 and "--expires-days needs --rotate" in failed.output
    assert cli(url, "token", "--name", "nobody", "--rotate").exit_code == 2


def test_token_expiry_through_the_cli(site):
    client, _, project, url, clock = site
    next_task = f"{API}/projects/{project}/tasks/next"
    created = cli(url, "create", "--name", "temp", "--expires-days", "2")
    assert created.exit_code == 0, created.output
    assert "valid until" in created.stdout
    token = created.stdout.strip().splitlines()[-1]
    assert client.get(next_task, headers=bearer(token)).status_code == 200  # now cached
    signed_in_page(client, token)
    (expires,) = stored(url, select(WebSession.expires_at))[0]
    assert expires - clock.now < timedelta(hours=12, seconds=1)

    clock.advance(days=2, minutes=1)  # past the expiry, well within the cache's 10 s
    reply = client.get(next_task, headers=bearer(token))
    assert reply.status_code == 401 and "this token expired on" in reply.json()["detail"]
    assert client.get("/projects", follow_redirects=False).status_code == 303
    reply = sign_in(TestClient(client.app), token)
    assert reply.status_code == 401 and "This token expired on" in reply.text

    # A session never outlives its token: signed in a day before expiry, it ends with it.
    rotated = cli(url, "token", "--name", "temp", "--rotate", "--expires-days", "1")
    token = rotated.stdout.strip().splitlines()[-1]
    assert "valid until" in rotated.stdout
    clock.now = datetime.now(UTC) + timedelta(hours=20)
    signed_in_page(client, token)
    for _ in range(7):  # until 23 h 30 min after the rotation, never idle
        clock.advance(minutes=30)
        assert client.get("/projects", follow_redirects=False).status_code == 200
    clock.advance(minutes=31)
    assert client.get("/projects", follow_redirects=False).status_code == 303
    failed = cli(url, "create", "--name", "x", "--expires-days", "0")
    assert failed.exit_code == 2 and "--expires-days" in failed.output


def test_repository_sessions_and_token_lifecycle(url):
    upgrade(url)
    engine = make_engine(url)
    policy = repo.SessionPolicy()
    t0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
    try:
        with session_factory(engine)() as session:
            ann, token = repo.create_contributor(session, "ann")
            with pytest.raises(CredentialError, match="unknown token"):
                repo.start_session(session, token + "x", policy=policy, now=t0)
            _, sid = repo.start_session(session, token, policy=policy, now=t0)
            assert repo.session_contributor(session, sid, policy=policy, now=t0).id == ann.id
            # Read-only within a minute of the last write, then last_seen_at moves.
            repo.session_contributor(session, sid, policy=policy, now=t0 + timedelta(seconds=30))
            assert session.scalar(select(WebSession.last_seen_at)) == t0
            later = t0 + timedelta(minutes=2)
            repo.session_contributor(session, sid, policy=policy, now=later)
            assert session.scalar(select(WebSession.last_seen_at)) == later
            for bad in ("", "nope"):
                with pytest.raises(CredentialError, match="no such session"):
                    repo.session_contributor(session, bad, policy=policy, now=t0)
            assert repo.end_session(session, sid) is True
            assert repo.end_session(session, sid) is False

            _, sid = repo.start_session(session, token, policy=policy, now=t0)
            assert repo.revoke_token(session, ann.id, now=t0) == 1
            assert repo.revoke_token(session, ann.id, now=t0 + timedelta(days=1)) == 0
            revoked_at = session.scalar(select(Contributor.token_revoked_at).where(
                Contributor.id == ann.id))  # fmt: skip
            assert revoked_at == t0  # the first date is kept
            with pytest.raises(CredentialError, match="revoked on 2030-01-01 12:00 UTC"):
                repo.authenticate(session, token, now=t0)

            with pytest.raises(ValueError, match="must be in the future"):
                repo.rotate_token(session, ann.id, expires_at=t0, now=t0)
            token = repo.rotate_token(session, ann.id, expires_at=t0 + timedelta(hours=2), now=t0)
            assert repo.authenticate(session, token, now=t0).id == ann.id
            _, sid = repo.start_session(session, token, policy=policy, now=t0)
            expires = session.scalar(select(WebSession.expires_at))
            assert expires == t0 + timedelta(hours=2)  # the token's expiry, not 12 h
            with pytest.raises(CredentialError, match="expired on 2030-01-01 14:00 UTC"):
                repo.authenticate(session, token, now=t0 + timedelta(hours=2))
            for missing in (repo.revoke_token, repo.rotate_token):
                with pytest.raises(NotFoundError, match="no contributor with id 999"):
                    missing(session, 999)
            assert session.scalar(select(func.count(WebSession.id))) == 1
    finally:
        engine.dispose()


def test_token_cache_forgets_revoked_tokens_and_skips_stale_lookups():
    cache = TokenCache(ttl=10.0)
    ann, bob = Caller(1, "ann", "annotator"), Caller(2, "bob", "annotator")
    cache.put("a", ann, now=0.0)
    cache.put("b", bob, now=0.0)
    before = cache.generation
    cache.forget_contributor(1)
    assert cache.get("a", now=1.0) is None and cache.get("b", now=1.0) == bob
    # A lookup that started before the revocation is not remembered.
    cache.put("a", ann, now=1.0, generation=before)
    assert cache.get("a", now=2.0) is None
    cache.put("a", ann, now=1.0, generation=cache.generation)
    assert cache.get("a", now=2.0) == ann


def test_migration_0003_keeps_contributors_and_their_tokens(url):
    upgrade(url, "0002")
    token = "an-old-token-made-before-sessions"
    engine = make_engine(url)
    with engine.begin() as connection:
        run = connection.exec_driver_sql
        run("INSERT INTO contributor (id, name, role, token_hash, created_at) VALUES "
            f"(1, 'old', 'admin', '{hashlib.sha256(token.encode()).hexdigest()}', "
            "'2026-01-01')")  # fmt: skip
        run("INSERT INTO project (id, name, kind, overlap, created_at) "
            "VALUES (1, 'p', 'pairwise', 1, '2026-01-01')")  # fmt: skip
        run("INSERT INTO item (id, project_id, prompt, response_a, response_b, created_at) "
            "VALUES (1, 1, '[\"q\"]', '[\"a\"]', '[\"b\"]', '2026-01-01')")  # fmt: skip
        run("INSERT INTO task (id, item_id, contributor_id, created_at) "
            "VALUES (1, 1, 1, '2026-01-01')")  # fmt: skip
    engine.dispose()
    assert upgrade(url, "0003") == "0003"
    rows = stored(url, select(Contributor.name, Contributor.token_expires_at,
                              Contributor.token_revoked_at))  # fmt: skip
    assert [tuple(row) for row in rows] == [("old", None, None)]
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            old, sid = repo.start_session(session, token, policy=repo.SessionPolicy())
            assert old.name == "old"
            assert repo.session_contributor(session, sid, policy=repo.SessionPolicy()).id == 1
    finally:
        engine.dispose()
    # Down to 0002 and back up: the sessions go, the contributors stay.
    assert downgrade(url, "0002") == "0002"
    assert upgrade(url) == head_revision()
    assert stored(url, select(WebSession.id)) == []
    assert [row.name for row in stored(url, select(Contributor.name))] == ["old"]
