"""``crowdtune projects`` for the three kinds: create (kind, scale, assignment, editor), import
(@car, JSONL and CSV files of single answers, pairwise datasets as before), export (every format
of every kind, parsed back); and ``crowdtune data list`` naming the revision datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.datasets.car import load_car_revisions
from crowdtune.datasets.comparisons import read_arena_csv, read_jsonl
from crowdtune.datasets.ratings import read_ratings_jsonl
from crowdtune.datasets.revisions import read_revisions_jsonl
from crowdtune.store import make_engine, session_factory
from crowdtune.store import repository as repo
from crowdtune.store.models import Item, Project

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'projects.db'}"


def items_of(db: str, name: str) -> list[Item]:
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            project = session.scalar(select(Project).where(Project.name == name))
            return list(session.scalars(select(Item).where(Item.project_id == project.id)))
    finally:
        engine.dispose()


def test_create_projects_of_each_kind(db):
    for args, said in [
        (["--name", "rev", "--kind", "revision"],
         "created revision project 'rev' (id 1, overlap 3, depth assignment)"),
        (["--name", "blank", "--kind", "revision", "--empty-editor", "--overlap", "2"],
         "overlap 2, depth assignment, empty editor"),
        (["--name", "rate", "--kind", "rating"], "scale 1-7"),
        (["--name", "five", "--kind", "rating", "--scale", "1-5", "--assignment", "breadth"],
         "scale 1-5, breadth assignment"),
        (["--name", "signed", "--kind", "rating", "--scale", "-2..2"], "scale -2-2"),
        (["--name", "pairs"], "created pairwise project 'pairs'"),
    ]:  # fmt: skip
        result = invoke("projects", "create", "--db", db, *args)
        assert result.exit_code == 0 and said in result.stdout, result.output
    engine = make_engine(db)
    with session_factory(engine)() as session:
        projects = {p.name: p for p in repo.list_projects(session)}
        assert projects["five"].scale == (1, 5) and projects["five"].assignment == "breadth"
        assert projects["blank"].editor_prefill is False and projects["rev"].editor_prefill
        assert projects["signed"].scale == (-2, 2) and projects["pairs"].kind == "pairwise"
    engine.dispose()
    for args, message in [
        (["--name", "x", "--kind", "ranking"], "unknown --kind 'ranking'"),
        (["--name", "x", "--kind", "revision", "--scale", "1-5"], "--scale is for rating"),
        (["--name", "x", "--kind", "rating", "--scale", "seven"], "expected LOW-HIGH"),
        (["--name", "x", "--kind", "rating", "--scale", "5-1"], "a scale runs from its lowest"),
        (["--name", "x", "--kind", "rating", "--empty-editor"], "is for revision projects"),
        (["--name", "x", "--assignment", "random"], "assignment order"),
        (["--name", "rev", "--kind", "revision"], "exists already"),
    ]:
        result = invoke("projects", "create", "--db", db, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_import_car_and_item_files_into_revision_and_rating_projects(db, tmp_path):
    for name, kind in (("rev", "revision"), ("some gold", "revision"), ("rate", "rating")):
        assert (
            invoke("projects", "create", "--db", db, "--name", name, "--kind", kind).exit_code == 0
        )
    car = load_car_revisions("test")[:30]
    result = invoke("projects", "import", "--db", db, "--project", "rev", "--data", "@car:test",
                    "--limit", "30")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "imported 30 items (30 with gold answers) into revision project 1" in result.stdout
    items = sorted(items_of(db, "rev"), key=lambda item: item.id)
    assert [item.external_id for item in items] == [r.id for r in car]
    assert [item.response_a for item in items] == [[r.original] for r in car]
    assert [item.reference for item in items] == [r.revised for r in car]
    assert all(item.response_b is None and item.gold is None for item in items)
    result = invoke("projects", "import", "--db", db, "--project", "some gold", "--data",
                    "@car:test", "--limit", "30", "--gold-share", "0.2")  # fmt: skip
    assert "imported 30 items (6 with gold answers)" in result.stdout, result.output
    result = invoke("projects", "import", "--db", db, "--project", "rate", "--data", "@car:test",
                    "--limit", "10")  # fmt: skip
    assert "imported 10 items (0 with gold answers) into rating project 3" in result.stdout
    assert {item.response_a[0] for item in items_of(db, "rate")} == {r.original for r in car[:10]}

    csv = tmp_path / "answers.csv"
    csv.write_text('id,prompt,response,gold\na,"Say ""hi"".",hi,"[5, 7]"\nb,p,r,2\nc,q,s,\n')
    result = invoke("projects", "import", "--db", db, "--project", "rate", "--data", str(csv))
    assert "imported 3 items (2 with gold answers)" in result.stdout, result.output
    gold = {i.external_id: (i.gold_low, i.gold_high) for i in items_of(db, "rate")}
    assert gold["a"] == (5, 7) and gold["b"] == (2, 2) and gold["c"] == (None, None)
    jsonl = tmp_path / "revise.jsonl"
    jsonl.write_text(json.dumps({"prompt": ["Hi", "Count"], "response": "1 2", "id": "j"}) + "\n")
    result = invoke("projects", "import", "--db", db, "--project", "rev", "--data", str(jsonl))
    assert "imported 1 items (0 with gold answers)" in result.stdout, result.output

    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,response,gold\np,r,3\nq,s,9\n")
    before = len(items_of(db, "rate"))
    for project, data, message in [
        ("rate", str(bad), "bad.csv, data row 2, column 'gold'"),
        ("rate", str(tmp_path / "missing.jsonl"), "no item file at"),
        ("rate", "@nosuch", "--data @nosuch"),
        ("rev", "@car:test", "already has an item"),  # the same ids again: nothing half-imported
        ("nope", "@car", "no project named 'nope'"),
    ]:
        result = invoke("projects", "import", "--db", db, "--project", project, "--data", data)
        assert result.exit_code == 2 and message in result.output, (data, result.output)
    assert len(items_of(db, "rate")) == before


def answer_everything(db: str) -> None:
    """Two annotators answer every task of every project: 'b' votes, revisions that add a line
    (ann) or keep the answer (bob), scores of 6 (ann) and 3 (bob)."""
    engine = make_engine(db)
    with session_factory(engine)() as session:
        people = [repo.create_contributor(session, name)[0] for name in ("ann", "bob")]
        for project in repo.list_projects(session):
            for person in people:
                while (task := repo.next_task(session, project.id, person.id)) is not None:
                    answer: dict = {"pairwise": {"verdict": "b"},
                                    "revision": {"revision": task.item.response_a[0] + " Done."
                                                 if person.name == "ann"
                                                 else task.item.response_a[0]},
                                    "rating": {"score": 6 if person.name == "ann" else 3}}[
                        project.kind]  # fmt: skip
                    repo.submit_response(session, task.id, person.id, **answer)
    engine.dispose()


def test_export_every_format_of_every_kind(db, tmp_path):
    for name, kind, data in (("pairs", "pairwise", "@pandalm"), ("rev", "revision", "@car:test"),
                             ("rate", "rating", "@car:test")):  # fmt: skip
        assert invoke("projects", "create", "--db", db, "--name", name, "--kind", kind,
                      "--overlap", "2").exit_code == 0  # fmt: skip
        result = invoke("projects", "import", "--db", db, "--project", name, "--data", data,
                        "--limit", "5")  # fmt: skip
        assert result.exit_code == 0, result.output
    answer_everything(db)

    def export(project: str, fmt: str, name: str, *extra: str) -> Path:
        out = tmp_path / name
        result = invoke("projects", "export", "--db", db, "--project", project, "--format", fmt,
                        "--out", str(out), *extra)  # fmt: skip
        assert result.exit_code == 0 and f"to {out} as {fmt}" in result.stdout, result.output
        return out

    assert len(read_jsonl(export("pairs", "jsonl", "votes.jsonl"))) == 10
    assert len(read_arena_csv(export("pairs", "arena-csv", "votes.csv"))) == 10
    trl = export("pairs", "trl", "votes-trl.jsonl.gz")
    assert trl.read_bytes()[:2] == b"\x1f\x8b"  # gzipped, as the name asks

    revisions = read_revisions_jsonl(export("rev", "jsonl", "revisions.jsonl"))
    assert len(revisions) == 10 and sum(r.changed for r in revisions) == 5
    assert all(r.reference is not None for r in revisions)
    sft = export("rev", "sft", "sft.jsonl").read_text().splitlines()
    assert len(sft) == 10 and json.loads(sft[0])["messages"][0]["role"] == "user"
    result = invoke("projects", "export", "--db", db, "--project", "rev", "--format", "trl",
                    "--out", str(tmp_path / "pairs.jsonl"))  # fmt: skip
    assert "(5 left out: the format cannot hold them)" in result.stdout, result.output
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(row["chosen"].endswith(" Done.") for row in rows)

    ratings = read_ratings_jsonl(export("rate", "jsonl", "ratings.jsonl"))
    assert sorted(r.score for r in ratings) == [3.0] * 5 + [6.0] * 5
    table = pd.read_csv(export("rate", "csv", "ratings.csv"))
    assert len(table) == 10 and set(table["contributor"]) == {"ann", "bob"}
    kto = export("rate", "kto", "kto.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["label"] for line in kto) == 5
    kto = export("rate", "kto", "kto2.jsonl", "--threshold", "2").read_text().splitlines()
    assert sum(json.loads(line)["label"] for line in kto) == 10

    for project, args, message in [
        ("rev", ["--format", "kto"], "choose one of: jsonl, sft, trl"),
        ("rate", ["--format", "arena-csv"], "choose one of: jsonl, csv, kto"),
        ("pairs", ["--format", "sft"], "choose one of: arena-csv, jsonl, trl"),
        ("rate", ["--format", "jsonl", "--threshold", "4"], "--threshold goes with format=kto"),
        ("rate", ["--format", "kto", "--threshold", "9"], "on the project's scale, 1 to 7"),
        ("nope", ["--format", "jsonl"], "no project named 'nope'"),
    ]:
        result = invoke("projects", "export", "--db", db, "--project", project,
                        "--out", str(tmp_path / "x.jsonl"), *args)  # fmt: skip
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_data_list_names_the_revision_datasets():
    result = invoke("data", "list")
    assert result.exit_code == 0
    rows = [tuple(line.split("\t")) for line in result.stdout.splitlines()]
    kinds = {(name, kind) for name, kind, _ in rows}
    assert {("@pandalm", "comparisons"), ("@car", "comparisons"), ("@car", "revisions")} <= kinds
    assert [kind for _, kind, _ in rows].index("revisions") > 0  # comparisons come first


def test_the_help_explains_the_kinds():
    for command, words in [
        (["projects", "create"], ("revision", "rating", "--scale", "--assignment")),
        (["projects", "import"], ("@car", "reference", "gold")),
        (["projects", "export"], ("sft", "kto", "arena-csv", "--threshold")),
    ]:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert all(word in result.output for word in words), (command, result.output)
