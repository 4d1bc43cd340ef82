"""The feedback store: migrations match the models, tokens are hashed, assignment respects the
overlap under concurrency, submissions are idempotent; on SQLite and on PostgreSQL."""

import hashlib
import threading
from collections import Counter

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from crowdtune.cli.db import db_app, users_app
from crowdtune.datasets.comparisons import read_jsonl, write_jsonl
from crowdtune.records import Comparison, Verdict
from crowdtune.store import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from crowdtune.store.models import Base, Contributor, Item, Response, Task
from crowdtune.store.repository import (
    add_items,
    contributor_by_token,
    create_contributor,
    create_project,
    next_task,
    progress,
    project_comparisons,
    submit_response,
)


@pytest.fixture
def engine(url):
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def Session(engine):  # noqa: N802 (a session factory, named like the class it makes)
    return session_factory(engine)


def items(n):
    return [
        {"prompt": f"question {i}", "response_a": f"a{i}", "response_b": f"b{i}", "id": f"q{i}"}
        for i in range(n)
    ]


def test_migrations_create_exactly_the_models(url):
    assert current_revision(url) is None
    assert upgrade(url) == head_revision() == current_revision(url)
    assert upgrade(url) == head_revision()  # idempotent
    engine = make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_sqlite_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        # FULL by default: an acknowledged vote survives a power loss.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    engine.dispose()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="normal")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()
    with pytest.raises(ValueError, match="unknown sqlite_synchronous 'OFF'"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="off")


def test_sqlite_writers_of_one_process_take_turns_on_one_lock(tmp_path):
    from crowdtune.store.db import write_lock

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    inside, most = 0, 0
    guard = threading.Lock()

    def writer() -> None:
        nonlocal inside, most
        for _ in range(50):
            with write_lock(engine):
                with guard:
                    inside += 1
                    most = max(most, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    engine.dispose()
    # PostgreSQL arbitrates its own writers: no lock, nothing held.
    with write_lock(make_engine("postgresql://u@h/d")):
        pass


def test_migration_0002_backfills_the_assignment_counters(url):
    upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        run = connection.exec_driver_sql
        run(
            "INSERT INTO contributor (id, name, role, token_hash, created_at) VALUES "
            "(1, 'a', 'annotator', 'h1', '2026-01-01'), (2, 'b', 'annotator', 'h2', '2026-01-01')"
        )
        run(
            "INSERT INTO project (id, name, kind, overlap, created_at) "
            "VALUES (1, 'p', 'pairwise', 2, '2026-01-01')"
        )
        for item in (1, 2, 3):
            run(
                "INSERT INTO item (id, project_id, prompt, response_a, response_b, created_at) "
                f"VALUES ({item}, 1, '[\"q\"]', '[\"a\"]', '[\"b\"]', '2026-01-01')"
            )
        run(
            "INSERT INTO task (id, item_id, contributor_id, created_at) VALUES "
            "(1, 1, 1, '2026-01-01'), (2, 1, 2, '2026-01-01'), (3, 2, 1, '2026-01-01')"
        )
        run("INSERT INTO response (id, task_id, contributor_id, verdict, idempotency_key, "
            "created_at) VALUES (1, 1, 1, 'a', 'k1', '2026-01-01')")  # fmt: skip
    engine.dispose()
    assert upgrade(url) == head_revision()
    engine = make_engine(url)
    with engine.connect() as connection:
        assigned = dict(connection.execute(select(Item.id, Item.assigned)).all())
        answered = dict(connection.execute(select(Task.id, Task.answered)).all())
    engine.dispose()
    assert assigned == {1: 2, 2: 1, 3: 0}
    assert answered == {1: True, 2: False, 3: False}
    # The counters then drive assignment: contributor 2 gets its open task, then item 2.
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert next_task(session, 1, 2).id == 2
        assert next_task(session, 1, 1).id == 3
    engine.dispose()


def test_bad_urls_are_value_errors():
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        make_engine("mysql://x@y/z")
    with pytest.raises(ValueError, match="not a database URL"):
        make_engine("no url at all")
    assert make_engine("postgresql://u@h/d").url.drivername == "postgresql+psycopg"


def test_tokens_are_stored_only_as_hashes(url, engine, Session):
    with Session() as session:
        alice, token = create_contributor(session, "alice", "annotator")
        assert len(token) >= 40
        assert contributor_by_token(session, token).id == alice.id
        assert contributor_by_token(session, token + "x") is None
        assert contributor_by_token(session, "") is None
    with engine.connect() as connection:
        rows = connection.execute(select(Contributor.__table__)).all()
    assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert all(token not in str(tuple(row)) for row in rows)
    if url.startswith("sqlite"):
        engine.dispose()  # checkpoint the WAL into the file
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            try:
                data = open(path + suffix, "rb").read()
            except FileNotFoundError:
                continue
            assert token.encode() not in data


def test_names_and_roles_are_checked(engine, Session):
    with Session() as session:
        create_contributor(session, "alice", "admin")
        with pytest.raises(ConflictError, match="alice"):
            create_contributor(session, "alice", "annotator")
        with pytest.raises(ValueError, match="role"):
            create_contributor(session, "bob", "owner")
        create_project(session, "p", overlap=2)
        with pytest.raises(ConflictError, match="'p'"):
            create_project(session, "p")
        with pytest.raises(ValueError, match="overlap"):
            create_project(session, "q", overlap=0)
        assert session.scalar(select(func.count(Contributor.id))) == 1


def test_add_items_validates_all_before_storing(engine, Session):
    with Session() as session:
        project = create_project(session, "p")
        with pytest.raises(ValueError, match=r"item 1: unknown field\(s\) \['winner'\]"):
            add_items(session, project.id, [items(1)[0], {**items(2)[1], "winner": "a"}])
        with pytest.raises(ValueError, match="item 0: gold"):
            add_items(session, project.id, [{**items(1)[0], "gold": "c"}])
        with pytest.raises(ConflictError, match="'q0'"):
            add_items(session, project.id, items(1) + items(1))
        assert session.scalar(select(func.count(Item.id))) == 0
        add_items(session, project.id, items(2))
        with pytest.raises(ConflictError, match="'q1'"):
            add_items(session, project.id, items(2)[1:])
        with pytest.raises(NotFoundError):
            add_items(session, 999, items(1))
        assert session.scalar(select(func.count(Item.id))) == 2


def test_assignment_gives_each_item_to_k_distinct_contributors(engine, Session):
    with Session() as session:
        project = create_project(session, "p", overlap=2)
        add_items(session, project.id, items(5))
        people = [create_contributor(session, f"u{i}", "annotator")[0] for i in range(4)]
        # Open tasks come back until answered.
        first = next_task(session, project.id, people[0].id)
        assert next_task(session, project.id, people[0].id).id == first.id
        submit_response(session, first.id, people[0].id, verdict="a", idempotency_key="k0")
        done = 1
        while True:
            handed = [next_task(session, project.id, person.id) for person in people]
            if all(task is None for task in handed):
                break
            for task in handed:
                if task is not None:
                    submit_response(session, task.id, task.contributor_id, verdict="tie")
                    done += 1
        pairs = session.execute(select(Task.item_id, Task.contributor_id)).all()
        assert done == len(pairs) == 10
        assert set(Counter(item for item, _ in pairs).values()) == {2}
        assert len(set(pairs)) == len(pairs)
        stats = progress(session, project.id)
        assert stats.to_dict() == {
            "items": 5,
            "tasks": 10,
            "responses": 10,
            "open_tasks": 0,
            "items_complete": 5,
            "overlap": 2,
            "skipped": 0,
        }


def test_breadth_assignment_prefers_the_least_assigned_item(engine, Session):
    with Session() as session:
        project = create_project(session, "p", overlap=3, assignment="breadth")
        add_items(session, project.id, items(3))
        people = [create_contributor(session, f"u{i}", "annotator")[0] for i in range(3)]
        handed = [next_task(session, project.id, person.id).item_id for person in people]
        assert handed == sorted(set(handed))  # one each, lowest id first


def test_depth_assignment_completes_items(engine, Session):
    """The default order: after k*m answers from k contributors, m items are complete, however
    the contributors take turns (here: the first does all of hers first, then round-robin)."""
    k, m = 3, 4
    with Session() as session:
        project = create_project(session, "p", overlap=k)
        assert project.assignment == "depth"
        add_items(session, project.id, items(20))
        people = [create_contributor(session, f"u{i}", "annotator")[0].id for i in range(k)]
        order = [people[0]] * m + [p for _ in range(m) for p in people[1:]]
        for person in order:
            task = next_task(session, project.id, person)
            submit_response(session, task.id, person, verdict="a")
        stats = progress(session, project.id)
        assert (stats.responses, stats.items_complete) == (k * m, m)
    with Session() as session:  # the breadth order leaves items incomplete on the same turns
        project = create_project(session, "q", overlap=k, assignment="breadth")
        add_items(session, project.id, items(20))
        for person in order:
            task = next_task(session, project.id, person)
            submit_response(session, task.id, person, verdict="a")
        assert progress(session, project.id).items_complete < m


def test_concurrent_assignment_never_exceeds_the_overlap(engine, Session):
    n_threads, n_items, overlap = 8, 12, 3
    with Session() as session:
        project = create_project(session, "p", overlap=overlap)
        add_items(session, project.id, items(n_items))
        people = [create_contributor(session, f"u{i}", "annotator")[0].id for i in range(8)]
    barrier = threading.Barrier(n_threads)
    errors = []

    def annotate(contributor_id):
        try:
            with Session() as session:
                barrier.wait()
                while (task := next_task(session, project.id, contributor_id)) is not None:
                    submit_response(session, task.id, contributor_id, verdict="b")
        except Exception as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with Session() as session:
        pairs = session.execute(select(Task.item_id, Task.contributor_id)).all()
        per_item = Counter(item for item, _ in pairs)
        assert len(set(pairs)) == len(pairs)
        # Every item reached the overlap exactly: none exceeded it, none was abandoned early.
        assert sorted(per_item.values()) == [overlap] * n_items
        assert session.scalar(select(func.count(Response.id))) == n_items * overlap


def test_submissions_are_idempotent_and_owned(engine, Session):
    with Session() as session:
        project = create_project(session, "p")
        add_items(session, project.id, items(2))
        alice, _ = create_contributor(session, "alice", "annotator")
        bob, _ = create_contributor(session, "bob", "annotator")
        task = next_task(session, project.id, alice.id)
        first, created = submit_response(
            session,
            task.id,
            alice.id,
            verdict="a",
            reason="clearer",
            seconds=12.5,
            idempotency_key="key-1",
        )
        again, created_again = submit_response(
            session,
            task.id,
            alice.id,
            verdict="a",
            reason="clearer",
            seconds=12.5,
            idempotency_key="key-1",
        )
        assert created and not created_again and again.id == first.id
        assert session.scalar(select(func.count(Response.id))) == 1
        with pytest.raises(ConflictError, match="answered already"):
            submit_response(session, task.id, alice.id, verdict="b", idempotency_key="key-2")
        with pytest.raises(ForbiddenError, match="another contributor"):
            submit_response(session, task.id, bob.id, verdict="b", idempotency_key="key-3")
        with pytest.raises(NotFoundError):
            submit_response(session, 999, alice.id, verdict="b", idempotency_key="key-4")
        with pytest.raises(ValueError, match="verdict"):
            submit_response(session, task.id, alice.id, verdict="c", idempotency_key="key-5")
        other = next_task(session, project.id, bob.id)
        assert other.item_id != task.item_id
        submit_response(session, other.id, bob.id, verdict="a", idempotency_key="x")
        with pytest.raises(ConflictError, match="used for task"):
            submit_response(session, task.id, bob.id, verdict="a", idempotency_key="x")
        assert session.scalar(select(func.count(Response.id))) == 2


def test_project_comparisons_round_trip_verdicts(engine, Session, tmp_path):
    records = [
        Comparison(f"c{i}", (f"p{i}",), (f"a{i}",), (f"b{i}",), v, model_a="m1", model_b="m2")
        for i, v in enumerate([Verdict.A, Verdict.B, Verdict.TIE])
    ]
    with Session() as session:
        project = create_project(session, "arena", overlap=1)
        assert add_items(session, project.id, records, verdict_as_gold=True) == 3
        stored = session.scalars(
            select(Item.gold).where(Item.project_id == project.id).order_by(Item.id)
        )
        assert list(stored) == [Verdict.A, Verdict.B, Verdict.TIE]
        carol, _ = create_contributor(session, "carol", "annotator")
        for record in records:
            task = next_task(session, project.id, carol.id)
            submit_response(session, task.id, carol.id, verdict=record.verdict.name.lower())
        assert next_task(session, project.id, carol.id) is None
        votes = project_comparisons(session, project.id)
    assert [v.verdict for v in votes] == [r.verdict for r in records]
    assert [v.id for v in votes] == ["c0/carol", "c1/carol", "c2/carol"]
    assert {(v.annotator, v.source, v.model_a) for v in votes} == {("carol", "arena", "m1")}
    assert [v.prompt for v in votes] == [r.prompt for r in records]
    assert read_jsonl(write_jsonl(votes, tmp_path / "votes.jsonl")) == votes
    with engine.connect() as connection:  # stored as 'a', 'b', 'tie'
        codes = connection.execute(text("SELECT verdict FROM response ORDER BY id")).scalars()
        assert list(codes) == ["a", "b", "tie"]


def test_cli_users_create_prints_the_token_last_and_upgrade_is_idempotent(tmp_path):
    import typer

    app = typer.Typer()
    app.add_typer(db_app, name="db")
    app.add_typer(users_app, name="users")
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = runner.invoke(
        app, ["users", "create", "--db", url, "--name", "ann", "--role", "admin"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert contributor_by_token(session, token).role == "admin"
    engine.dispose()
    for _ in range(2):
        upgraded = runner.invoke(app, ["db", "upgrade", "--db", url])
        assert upgraded.exit_code == 0 and upgraded.stdout.strip() == head_revision()
    for args, message in [
        (["--name", "ann"], "exists already"),
        (["--name", "bob", "--role", "owner"], "unknown --role 'owner'"),
        (["--name", "bob", "--db", "mysql://x/y"], "unsupported database"),
        (["--name", "bob", "--db", f"sqlite:///{tmp_path}/missing/dir.db"], "cannot open"),
    ]:
        failed = runner.invoke(app, ["users", "create", "--db", url, *args])
        assert failed.exit_code == 2 and message in failed.output, failed.output


def test_cli_projects_import_real_items_with_a_share_of_gold(tmp_path):
    import typer

    from crowdtune.cli.projects import projects_app
    from crowdtune.store.models import Project

    app = typer.Typer()
    app.add_typer(projects_app, name="projects")
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'projects.db'}"
    created = runner.invoke(
        app, ["projects", "create", "--db", url, "--name", "p", "--overlap", "2"]
    )
    assert created.exit_code == 0 and "overlap 2" in created.stdout, created.output
    args = ["--project", "p", "--data", "@pandalm", "--limit", "20", "--gold-share", "0.25"]
    imported = runner.invoke(app, ["projects", "import", "--db", url, *args])
    assert imported.exit_code == 0, imported.output
    assert "imported 20 items (5 with gold answers)" in imported.stdout
    engine = make_engine(url)
    with session_factory(engine)() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        assert session.scalar(select(Project.overlap)) == 2
    engine.dispose()
    assert len(items) == 20 and sum(item.gold is not None for item in items) == 5
    assert all(item.prompt and item.response_a and item.response_b for item in items)
    assert len({item.external_id for item in items}) == 20
    for args, message in [
        (["--project", "nope", "--data", "@pandalm"], "no project named 'nope'"),
        (["--project", "p", "--data", "@pandalm", "--gold-share", "2"], "between 0 and 1"),
        (["--project", "p", "--data", "@nosuch"], "--data @nosuch"),
        # The same ids again: nothing is half-imported.
        (["--project", "p", "--data", "@pandalm", "--limit", "3"], "already has an item"),
    ]:
        failed = runner.invoke(app, ["projects", "import", "--db", url, *args])
        assert failed.exit_code == 2 and message in failed.output, failed.output


def test_comparison_items_keep_a_seeded_share_of_verdicts_as_gold():
    from crowdtune.store.repository import comparison_items

    comparisons = [
        Comparison(id=f"c{i}", prompt=("p",), response_a=("a",), response_b=("b",),
                   verdict=Verdict.A)
        for i in range(10)
    ]  # fmt: skip
    items = comparison_items(comparisons, gold_share=0.3, seed=4)
    assert [item["external_id"] for item in items] == [f"c{i}" for i in range(10)]
    assert sum(item["gold"] is not None for item in items) == 3
    assert items == comparison_items(comparisons, gold_share=0.3, seed=4)
    assert all(item["gold"] is None for item in comparison_items(comparisons))
    with pytest.raises(ValueError, match="gold_share must be between 0 and 1, got 1.5"):
        comparison_items(comparisons, gold_share=1.5)


def test_serve_sample_sets_up_an_empty_database_once(tmp_path, capsys):
    from crowdtune.cli.serve import sample_campaign

    url = f"sqlite:///{tmp_path / 'sample.db'}"
    upgrade(url)
    sample_campaign(url, "@pandalm", 30, "http://127.0.0.1:8000")
    first = capsys.readouterr().out
    tokens = {line.split()[0]: line.split()[-1] for line in first.splitlines()
              if line.startswith("  ")}  # fmt: skip
    assert set(tokens) == {"admin", "annotator-1", "annotator-2", "annotator-3"}
    sample_campaign(url, "@pandalm", 30, "http://127.0.0.1:8000")
    assert "has projects already" in capsys.readouterr().out
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert contributor_by_token(session, tokens["admin"]).role == "admin"
        assert session.scalar(select(func.count(Contributor.id))) == 4
        pairwise = Item.project_id == 1
        assert session.scalar(select(func.count(Item.id)).where(pairwise)) == 30
        assert session.scalar(select(func.count(Item.id)).where(Item.gold.is_not(None))) == 6
    engine.dispose()
