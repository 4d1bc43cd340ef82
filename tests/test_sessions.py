"""Sessions apart from tokens, and the token lifecycle, in the store, on SQLite and PostgreSQL:
sessions end when signed out, idle or past their absolute expiry, tokens can be revoked, rotated
and expire, and migration 0003 upgrades a database of 0002 with its data."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select

from crowdtune.store import (
    CredentialError,
    NotFoundError,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from crowdtune.store import repository as repo
from crowdtune.store.db import _alembic_config
from crowdtune.store.models import Contributor, WebSession


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a uniquely named PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    return request.getfixturevalue("postgres_url")


def stored(url, query):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return session.execute(query).all()
    finally:
        engine.dispose()


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
    assert upgrade(url) == head_revision() == "0003"
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
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
    finally:
        engine.dispose()
    assert upgrade(url) == "0003"
    assert stored(url, select(WebSession.id)) == []
    assert [row.name for row in stored(url, select(Contributor.name))] == ["old"]
