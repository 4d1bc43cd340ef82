"""Revision and rating projects in the store: items with one response and their gold answers,
the revision, score or skip that closes a task, the reads that give them back as records, and
migration 0004 on a database holding votes; on SQLite and on PostgreSQL."""

import pytest
from sqlalchemy import text

from crowdtune.records import Rating, Revision
from crowdtune.store import (
    ConflictError,
    ReusedKeyError,
    downgrade,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from crowdtune.store.repository import (
    add_items,
    create_contributor,
    create_project,
    get_project,
    next_task,
    progress,
    project_comparisons,
    project_ratings,
    project_revisions,
    project_single_gold,
    project_skips,
    revision_item,
    submit_response,
)


@pytest.fixture
def Session(url):  # noqa: N802 (a session factory, named like the class it makes)
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def test_revision_project_round_trip(Session):
    with Session() as session:
        project = create_project(session, "rev", kind="revision", overlap=2)
        assert (project.scale, project.assignment, project.editor_prefill) == (
            None,
            "depth",
            True,
        )
        created = add_items(
            session,
            project.id,
            [
                {"prompt": "Name a colour.", "response": "Red", "reference": "Red.", "id": "c1"},
                {"prompt": ["Say hi."], "response": "hello"},
                revision_item(Revision("r9", "Add 2+2.", "5", "4")),
            ],
        )
        assert created == 3
        ann, _ = create_contributor(session, "ann")
        bob, _ = create_contributor(session, "bob")
        task = next_task(session, project.id, ann.id)
        stored, new = submit_response(
            session, task.id, ann.id, revision="Red.", seconds=3.5, idempotency_key="k1"
        )
        assert new and stored.revision == "Red." and stored.verdict is None
        again, new = submit_response(
            session, task.id, ann.id, revision="Red.", seconds=3.5, idempotency_key="k1"
        )
        assert (again.id, new) == (stored.id, False)
        with pytest.raises(ReusedKeyError, match="revision"):
            submit_response(session, task.id, ann.id, revision="Blue.", idempotency_key="k1")
        # depth first: bob gets the item ann started
        task_b = next_task(session, project.id, bob.id)
        assert task_b.item_id == task.item_id
        submit_response(session, task_b.id, bob.id, revision="Red")
        revisions = project_revisions(session, project.id)
        assert revisions == [
            Revision("c1/ann", ("Name a colour.",), "Red", "Red.", "ann", "rev", "Red."),
            Revision("c1/bob", ("Name a colour.",), "Red", "Red", "bob", "rev", "Red."),
        ]
        assert [r.changed for r in revisions] == [True, False]
        assert project_comparisons(session, project.id) == []  # no votes in it
        gold = project_single_gold(session, project.id)
        assert [(g.response, g.reference) for g in gold] == [("Red", "Red."), ("5", "4")]
        assert progress(session, project.id).items_complete == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"revision": "  "}, "revision must be a non-empty text"),
        ({"revision": "x" * 20_001}, "at most 20000 characters"),
        ({"revision": "bad\x00"}, "revision"),
        ({"score": 4}, "this is a revision task: send 'revision', not 'score'"),
        ({"verdict": "a"}, "send 'revision', not 'verdict'"),
        ({"revision": "x", "score": 3}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_revision_answers_that_are_refused_name_the_field(Session, answer, message):
    with Session() as session:
        project = create_project(session, "rev", kind="revision")
        add_items(session, project.id, [{"prompt": "p", "response": "r"}])
        ann, _ = create_contributor(session, "ann")
        task = next_task(session, project.id, ann.id)
        with pytest.raises(ValueError, match=message):
            submit_response(session, task.id, ann.id, **answer)
        assert progress(session, project.id).responses == 0


def test_rating_project_scale_gold_and_aspects(Session):
    with Session() as session:
        project = create_project(session, "rate", kind="rating", overlap=1, scale=(1, 5))
        assert project.scale == (1, 5)
        add_items(
            session,
            project.id,
            [
                {"prompt": "p1", "response": "r1", "gold": 4},
                {"prompt": "p2", "response": "r2", "gold": [2, 3]},
                {"prompt": "p3", "response": "r3"},
            ],
        )
        for bad, message in [
            ({"prompt": "p", "response": "r", "gold": 6}, "gold must be a number from 1 to 5"),
            ({"prompt": "p", "response": "r", "gold": [3, 2]}, "low <= high"),
            ({"prompt": "p", "response": "r", "reference": "x"}, "unknown field"),
            ({"prompt": "p", "response_a": "r"}, "unknown field"),
        ]:
            with pytest.raises(ValueError, match=message):
                add_items(session, project.id, [bad])
        ann, _ = create_contributor(session, "ann")
        task = next_task(session, project.id, ann.id)
        for score, message in [(6, "from 1 to 5"), (0, "from 1 to 5"), (2.5, "whole number")]:
            with pytest.raises(ValueError, match=message):
                submit_response(session, task.id, ann.id, score=score)
        with pytest.raises(ValueError, match="aspects.clarity must be a whole number"):
            submit_response(session, task.id, ann.id, score=3, aspects={"clarity": 9})
        submit_response(session, task.id, ann.id, score=4, aspects={"clarity": 5})
        ratings = project_ratings(session, project.id)
        assert ratings == [
            Rating("item-1/ann", ("p1",), "r1", 4.0, (1.0, 5.0), None, "ann", "rate")
        ]
        assert ratings[0].aspects == {"clarity": 5.0}
        gold = project_single_gold(session, project.id)
        assert [(g.low, g.high) for g in gold] == [(4.0, 4.0), (2.0, 3.0)]


def test_scales_only_for_rating_projects(Session):
    with Session() as session:
        with pytest.raises(ValueError, match="only a rating project has a scale"):
            create_project(session, "x", kind="revision", scale=(1, 5))
        with pytest.raises(ValueError, match="scale"):
            create_project(session, "y", kind="rating", scale=(5, 1))
        with pytest.raises(ValueError, match="assignment order"):
            create_project(session, "z", assignment="random")
        assert create_project(session, "w", kind="rating").scale == (1, 7)


def test_a_skip_gives_the_item_to_someone_else(Session):
    with Session() as session:
        project = create_project(session, "rev", kind="revision", overlap=1)
        add_items(session, project.id, [{"prompt": "p", "response": "r"}])
        ann, _ = create_contributor(session, "ann")
        bob, _ = create_contributor(session, "bob")
        task = next_task(session, project.id, ann.id)
        with pytest.raises(ValueError, match="exactly one"):
            submit_response(session, task.id, ann.id, skipped=True, revision="x")
        submit_response(session, task.id, ann.id, skipped=True, reason="not my language")
        assert next_task(session, project.id, ann.id) is None  # never the same item again
        task_b = next_task(session, project.id, bob.id)
        assert task_b is not None and task_b.item_id == task.item_id
        submit_response(session, task_b.id, bob.id, revision="r!")
        stats = progress(session, project.id)
        assert (stats.responses, stats.skipped, stats.items_complete) == (2, 1, 1)
        assert [(s.contributor, s.reason) for s in project_skips(session, project.id)] == [
            ("ann", "not my language")
        ]
        assert [r.contributor for r in project_revisions(session, project.id)] == ["bob"]


def test_the_database_refuses_a_response_with_two_answers(Session):
    with Session() as session:
        project = create_project(session, "pw")
        add_items(session, project.id, [{"prompt": "p", "response_a": "a", "response_b": "b"}])
        ann, _ = create_contributor(session, "ann")
        task = next_task(session, project.id, ann.id)
        with pytest.raises(Exception, match="(?i)check"):
            session.execute(
                text(
                    "INSERT INTO response (task_id, contributor_id, verdict, score, skipped, "
                    "idempotency_key, created_at) VALUES (:t, :c, 'a', 3, false, 'k', "
                    "CURRENT_TIMESTAMP)"
                ),
                {"t": task.id, "c": ann.id},
            )
            session.commit()
        session.rollback()


def test_migration_0004_keeps_the_votes_of_a_database_at_0003(url):
    upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as connection:
        run = connection.exec_driver_sql
        run(
            "INSERT INTO contributor (id, name, role, token_hash, created_at) VALUES "
            "(1, 'a', 'annotator', 'h1', '2026-01-01')"
        )
        run(
            "INSERT INTO project (id, name, kind, overlap, created_at) VALUES "
            "(1, 'p', 'pairwise', 1, '2026-01-01'), (2, 'r', 'rating', 1, '2026-01-01')"
        )
        run(
            "INSERT INTO item (id, project_id, prompt, response_a, response_b, assigned, "
            "created_at) VALUES (1, 1, '[\"q\"]', '[\"a\"]', '[\"b\"]', 1, '2026-01-01')"
        )
        run(
            "INSERT INTO task (id, item_id, contributor_id, answered, created_at) "
            "VALUES (1, 1, 1, true, '2026-01-01')"
        )
        run(
            "INSERT INTO response (id, task_id, contributor_id, verdict, idempotency_key, "
            "created_at) VALUES (1, 1, 1, 'b', 'k', '2026-01-01')"
        )
    engine.dispose()
    upgrade(url)
    Session = session_factory(engine := make_engine(url))  # noqa: N806
    with Session() as session:
        [vote] = project_comparisons(session, 1)
        assert (vote.id, vote.verdict.name, vote.annotator) == ("item-1/a", "B", "a")
        assert get_project(session, 1).assignment == "depth"
        assert get_project(session, 2).scale == (1, 7)  # the default scale for an old project
        with pytest.raises(ConflictError):
            create_project(session, "p")
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_downgrade_to_0003_drops_what_it_cannot_hold_and_keeps_the_votes(url):
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        pairwise = create_project(session, "pw")
        add_items(session, pairwise.id, [{"prompt": "p", "response_a": "a", "response_b": "b"}])
        revision = create_project(session, "rev", kind="revision")
        add_items(session, revision.id, [{"prompt": "p", "response": "r"}])
        ann, _ = create_contributor(session, "ann")
        for project, answer in ((pairwise, {"verdict": "a"}), (revision, {"revision": "r!"})):
            task = next_task(session, project.id, ann.id)
            submit_response(session, task.id, ann.id, **answer)
    engine.dispose()
    assert downgrade(url, "0003") == "0003"
    engine = make_engine(url)
    with engine.connect() as connection:
        run = connection.exec_driver_sql
        assert run("SELECT count(*) FROM item").scalar() == 1
        assert run("SELECT verdict FROM response").scalars().all() == ["a"]
    engine.dispose()
    assert upgrade(url) == head_revision()
