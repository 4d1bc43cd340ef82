"""``crowdtune serve --sample``: a pairwise, a revision and a rating project on an empty database,
with what to open printed; the revision project left out with a note when the data home lacks
CaR; and the projects work over HTTP with the printed tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crowdtune.cli.serve import sample_campaign
from crowdtune.datasets.car import load_car_revisions
from crowdtune.server import create_app
from crowdtune.server.sample import EXPERT_GOLD, SAMPLE_SINGLE_ITEMS
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo

BASE = "http://127.0.0.1:8000"


def run_sample(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    upgrade(url)
    sample_campaign(url, "@pandalm", 12, BASE)
    return capsys.readouterr().out


def tokens_of(out: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith("  ")}


def test_sample_campaign_has_a_project_of_each_kind(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'sample.db'}"
    out = run_sample(url, capsys)
    assert set(tokens_of(out)) == {"admin", "annotator-1", "annotator-2", "annotator-3"}
    line = (
        r"^sample (\w+) project (\d+): (\d+) items \((\d+) gold\), overlap 3; "
        rf"annotate at {re.escape(BASE)}/projects/(\d+)/annotate$"
    )
    pages = re.findall(line, out, re.M)
    assert [(kind, int(n), int(gold)) for kind, _, n, gold, _ in pages] == [
        ("pairwise", 12, 2),
        ("revision", SAMPLE_SINGLE_ITEMS, SAMPLE_SINGLE_ITEMS // 3),
        ("rating", SAMPLE_SINGLE_ITEMS, SAMPLE_SINGLE_ITEMS // 6),
    ]
    assert all(project == page for _, project, _, _, page in pages)
    car = load_car_revisions("test")
    engine = make_engine(url)
    with session_factory(engine)() as session:
        projects = {p.kind: p for p in repo.list_projects(session)}
        assert projects["rating"].scale == (1, 7)
        assert all(p.overlap == 3 for p in projects.values())
        gold = repo.project_single_gold(session, projects["revision"].id)
        assert [(g.response, g.reference) for g in gold] == [
            (r.original, r.revised) for r in car[:SAMPLE_SINGLE_ITEMS:3]
        ]
        ranges = repo.project_single_gold(session, projects["rating"].id)
        assert {(g.low, g.high) for g in ranges} == {EXPERT_GOLD}
        assert {g.response for g in ranges} <= {r.revised for r in car}
    engine.dispose()

    # The printed tokens work: an annotator gets a task of each kind and answers it.
    headers = {"Authorization": f"Bearer {tokens_of(out)['annotator-1']}"}
    with TestClient(create_app(url)) as client:
        for kind, body in (("revision", {"revision": "Better."}), ("rating", {"score": 5})):
            project = projects[kind].id
            task = client.get(f"/api/v1/projects/{project}/tasks/next", headers=headers).json()
            assert task["kind"] == kind
            reply = client.post(f"/api/v1/tasks/{task['task_id']}/responses", json=body,
                                headers=headers)  # fmt: skip
            assert reply.status_code == 201, reply.text

    sample_campaign(url, "@pandalm", 12, BASE)
    assert "has projects already" in capsys.readouterr().out


def test_without_car_the_sample_skips_revisions_and_rates_the_comparisons(
    tmp_path: Path, capsys, monkeypatch
):
    from crowdtune.datasets import data_home

    home = tmp_path / "home"  # a data home with PandaLM and without CaR
    home.mkdir()
    (home / "pandalm-testset").symlink_to(data_home() / "pandalm-testset")
    monkeypatch.setenv("CROWDTUNE_DATA", str(home))
    url = f"sqlite:///{tmp_path / 'sample.db'}"
    out = run_sample(url, capsys)
    assert "no sample revision project: the data home lacks CaR" in out
    kinds = re.findall(r"^sample (\w+) project", out, re.M)
    assert kinds == ["pairwise", "rating"]
    engine = make_engine(url)
    with session_factory(engine)() as session:
        rating = next(p for p in repo.list_projects(session) if p.kind == "rating")
        items = repo.progress(session, rating.id).items
        assert items == 12 and repo.project_single_gold(session, rating.id) == []
    engine.dispose()


def test_serve_sample_fits_the_quality_scorer_once(monkeypatch, capsys):
    import crowdtune.curation.scoring as scoring
    from crowdtune.cli.serve import fit_quality_scorer

    fitted = []
    monkeypatch.setattr(scoring, "cached_default_scorer", lambda params=None: None)
    monkeypatch.setattr(scoring, "default_scorer", lambda params=None: fitted.append(params))
    fit_quality_scorer()
    assert (
        fitted == [{"encoder": "m2v"}]
        and "fitting the CaR quality scorer" in capsys.readouterr().out
    )
    monkeypatch.setattr(scoring, "cached_default_scorer", lambda params=None: object())
    fit_quality_scorer()
    assert len(fitted) == 1 and capsys.readouterr().out == ""  # cached: nothing to do
