"""The admin page's Crowd-SFT rounds: the round form of each project kind, the round's job
followed through the page's JSON (admins only) and cancelled from the page, a failed job's
message, the rounds table and the model lineage after a stored sft round, and the leaderboard's
credit when a scheme left a member unscored (points ``None``).

No worker runs here (it trains): a stored round is written the way the worker writes it, with
:func:`crowdtune.store.repository.record_job_round`, which keeps these tests fast.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from crowdtune.crowd.feedback.round import accumulated_points
from crowdtune.server import create_app
from crowdtune.server.pages.admin import evaluation_text, round_form
from crowdtune.server.scorer import QualityScorer
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo
from test_server_pages import csrf_of, sign_in

API = "/api/v1"
REVISION_ITEMS = [
    {"prompt": "Name a colour.", "response": "red", "reference": "Red is a colour."},
    {"prompt": "Name a fruit.", "response": "apple", "reference": "An apple is a fruit."},
    {"prompt": "Name a tree.", "response": "oak"},
    {"prompt": "Name a bird.", "response": "crow"},
]
PAIRWISE_ITEMS = [
    {"prompt": "2+2?", "response_a": "4", "response_b": "5", "gold": "a"},
    {"prompt": "Capital of France?", "response_a": "Rome", "response_b": "Paris"},
]
NLL = {"metric": "nll", "value": 2.5, "value_ci_low": 2.25, "value_ci_high": 2.75, "n_items": 2}


class Lengths:
    """A quality scorer that needs no fitted model: a text's length."""

    def score(self, texts):
        return np.array([float(len(text)) for text in texts])


def evaluation(value, diff):
    return {**NLL, "value": value, "value_ci_low": value - 0.25, "value_ci_high": value + 0.25,
            "diff": diff, "ci_low": diff - 0.125, "ci_high": diff + 0.125}  # fmt: skip


@pytest.fixture
def site(tmp_path):
    """A server on a fresh SQLite database with an admin, two annotators who each revised one
    item, a revision and a pairwise project (both with gold items), and the admin signed in:
    (client, url, {name: token}, {kind: project id})."""
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = {"root": repo.create_contributor(session, "root", "admin")[1]}
            revision = repo.create_project(session, "edits", kind="revision", overlap=2)
            pairwise = repo.create_project(session, "votes", overlap=2)
            repo.add_items(session, revision.id, REVISION_ITEMS)
            repo.add_items(session, pairwise.id, PAIRWISE_ITEMS)
            for name in ("ann", "bob"):
                contributor, tokens[name] = repo.create_contributor(session, name)
                task = repo.next_task(session, revision.id, contributor.id)
                repo.submit_response(session, task.id, contributor.id, revision=f"{name} wrote")
            projects = {"revision": revision.id, "pairwise": pairwise.id}
    finally:
        engine.dispose()
    with TestClient(create_app(url)) as client:
        client.app.state.quality_scorer = QualityScorer(scorer=Lengths())
        sign_in(client, tokens["root"])
        yield client, url, tokens, projects


def queue_from_page(client, project, **fields):
    """Queue a round through the admin page's form; the redirect's job id."""
    page = client.get(f"/projects/{project}/admin")
    form = {"csrf_token": csrf_of(page.text), "n_groups": "2", **fields}
    reply = client.post(f"/projects/{project}/admin/rounds", data=form, follow_redirects=False)
    assert reply.status_code == 303, reply.text
    location = reply.headers["location"]
    assert location.endswith("#rounds")
    return int(re.search(r"job=(\d+)", location).group(1))


def test_the_round_form_offers_what_each_kind_of_project_takes(site):
    client, _, _, projects = site
    assert round_form("revision")["candidates"] == ["sft"]
    assert round_form("pairwise")["candidates"] == ["preference", "dpo"]
    assert round_form("rating")["candidates"] == []

    page = client.get(f"/projects/{projects['revision']}/admin").text
    assert "Run a round" in page and "No round has run yet." in page
    assert '<option value="sft">' in page
    assert '<option value="dpo">' not in page and '<option value="preference">' not in page
    assert 'value="regression" data-candidates="sft"' in page
    assert 'value="shapley"' not in page  # preference rounds only
    assert 'name="max_steps"' in page and 'name="model"' not in page
    assert 'name="vote_weights"' not in page  # revisions have no votes to weigh
    assert '<script src="/static/admin.js" defer></script>' in page
    # Before any round, the lineage is the project's base model.
    lineage = page[page.index('id="lineage-table"') :]
    assert "<td>tiny</td>" in lineage and "✓ base" in lineage

    page = client.get(f"/projects/{projects['pairwise']}/admin").text
    assert '<option value="preference">' in page and '<option value="dpo">' in page
    assert 'value="shapley" data-candidates="preference">shapley (preference only)' in page
    assert 'value="regression" data-candidates="dpo">regression (dpo only)' in page
    assert 'value="rank" data-candidates="preference dpo">rank<' in page
    assert '<fieldset class="plain" data-candidates="dpo">' in page  # max_steps
    assert '<fieldset class="plain" data-candidates="preference">' in page  # model
    assert '<fieldset class="plain" data-candidates="preference dpo">' in page  # vote_weights
    assert '<option value="dawid-skene">by Dawid–Skene reliability (dawid-skene)' in page
    assert client.get("/static/admin.js").status_code == 200


def test_a_round_queued_from_the_page_is_followed_and_cancelled(site):
    client, _, tokens, projects = site
    project = projects["revision"]
    job = queue_from_page(client, project, candidate="sft", scheme="regression", max_steps="3")
    payload = client.get(f"{API}/jobs/{job}", headers={"Authorization": f"Bearer {tokens['root']}"})
    assert payload.json()["state"] == "queued"

    page = client.get(f"/projects/{project}/admin?job={job}").text
    assert f'data-url="/projects/{project}/admin/jobs/{job}" data-state="queued"' in page
    assert '<progress id="job-progress" max="1" value="0.0">' in page
    assert f'action="/projects/{project}/admin/jobs/{job}/cancel"' in page
    assert f'href="/projects/{project}/admin?job={job}#rounds">Refresh</a>' in page
    # The page shows the newest round job without ?job= too.
    assert 'data-state="queued"' in client.get(f"/projects/{project}/admin").text

    progress = client.get(f"/projects/{project}/admin/jobs/{job}")
    assert progress.status_code == 200 and progress.headers["cache-control"] == "no-store"
    data = progress.json()
    assert (data["id"], data["state"], data["progress"]) == (job, "queued", 0.0)
    assert data["kind"] == "round" and data["project_id"] == project
    # Not the job of another project, nor one that does not exist.
    assert client.get(f"/projects/{projects['pairwise']}/admin/jobs/{job}").status_code == 404
    assert client.get(f"/projects/{project}/admin/jobs/999").status_code == 404

    # Annotators get 403, the signed-out 401 (JSON) or the sign-in page.
    annotator = TestClient(client.app)
    sign_in(annotator, tokens["ann"])
    assert annotator.get(f"/projects/{project}/admin/jobs/{job}").status_code == 403
    stranger = TestClient(client.app)
    json_reply = stranger.get(
        f"/projects/{project}/admin/jobs/{job}", headers={"Accept": "application/json"}
    )
    assert json_reply.status_code == 401
    reply = stranger.get(f"/projects/{project}/admin/jobs/{job}", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/"

    cancel = f"/projects/{project}/admin/jobs/{job}/cancel"
    assert client.post(cancel, data={}).status_code == 403  # no CSRF token
    own = {"csrf_token": csrf_of(annotator.get("/projects").text)}
    assert annotator.post(cancel, data=own).status_code == 403
    reply = client.post(cancel, data={"csrf_token": csrf_of(page)}, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/projects/{project}/admin?job={job}#rounds"
    assert client.get(f"/projects/{project}/admin/jobs/{job}").json()["state"] == "cancelled"
    page = client.get(reply.headers["location"]).text
    assert 'data-state="cancelled"' in page and "cancelled before a worker started it" in page
    assert "/cancel" not in page  # nothing left to cancel
    # The project is free for the next round.
    assert queue_from_page(client, project, candidate="sft") == job + 1


def test_the_page_refuses_a_scheme_the_candidate_does_not_pay_by(site):
    client, url, tokens, projects = site
    page = client.get(f"/projects/{projects['pairwise']}/admin").text
    form = {"csrf_token": csrf_of(page), "candidate": "dpo", "scheme": "shapley"}
    reply = client.post(f"/projects/{projects['pairwise']}/admin/rounds", data=form)
    assert reply.status_code == 422 and "dpo rounds pay by" in reply.text
    form = {**form, "scheme": "rank", "max_steps": "0"}
    reply = client.post(f"/projects/{projects['pairwise']}/admin/rounds", data=form)
    assert reply.status_code == 422 and "max_steps" in reply.text
    form = {**form, "max_steps": "", "vote_weights": "kappa"}
    reply = client.post(f"/projects/{projects['pairwise']}/admin/rounds", data=form)
    assert reply.status_code == 422 and "vote_weights" in reply.text
    # the form's vote weights reach the queued job
    job = queue_from_page(client, projects["pairwise"], candidate="dpo", vote_weights="dawid-skene")
    headers = {"Authorization": f"Bearer {tokens['root']}"}
    assert client.get(f"{API}/jobs/{job}", headers=headers).status_code == 200
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            assert repo.get_job(session, job).payload["vote_weights"] == "dawid-skene"
    finally:
        engine.dispose()
    reply = client.post(
        f"/projects/{projects['revision']}/admin/rounds",
        data={"csrf_token": form["csrf_token"], "candidate": "sft", "vote_weights": "dawid-skene"},
    )
    assert reply.status_code == 422 and "it is for preference and dpo rounds" in reply.text


def test_a_running_job_shows_its_progress_and_a_failed_one_its_message(site):
    client, url, _, projects = site
    project = projects["pairwise"]
    job = queue_from_page(client, project, candidate="dpo", max_steps="2")
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            assert repo.claim_job(session, "w").id == job
            repo.beat(session, job, "w", progress=0.4, message="group 1: step 2 of 5")
            data = client.get(f"/projects/{project}/admin/jobs/{job}").json()
            assert (data["state"], data["progress"]) == ("running", 0.4)
            page = client.get(f"/projects/{project}/admin").text
            assert '<progress id="job-progress" max="1" value="0.4">40%</progress>' in page
            assert "group 1: step 2 of 5" in page
            assert 'disabled title="a round is queued or running"' in page
            repo.finish_job(session, job, "w", "failed", message="out of memory in group 2")
    finally:
        engine.dispose()
    page = client.get(f"/projects/{project}/admin").text
    assert 'data-state="failed"' in page
    assert '<p id="job-message" class="error" role="status">out of memory in group 2</p>' in page


def test_a_stored_sft_round_shows_in_the_rounds_the_lineage_and_the_credit(site):
    client, url, tokens, projects = site
    project = projects["revision"]
    job = queue_from_page(client, project, candidate="sft", scheme="leave-one-out")
    details = {
        "candidate": "sft", "round_number": 1, "strategy": "random", "scheme": "leave-one-out",
        "n_groups": 2, "seed": 5, "settings": {}, "base": "tiny", "base_name": "tiny",
        "base_evaluation": NLL, "winner": 1, "improved": True,
        "candidates": [
            {"group": 1, "members": ["ann"], "evaluation": evaluation(2.25, -0.25), "rank": 0,
             "reason": None, "path": "/m/1", "name": "round-1-group-1"},
            {"group": 2, "members": ["bob"], "evaluation": evaluation(2.75, 0.25), "rank": 1,
             "reason": None, "path": "/m/2", "name": "round-1-group-2"},
        ],
        "contributors": [{"contributor": "ann", "group": 1, "rows": 1, "points": 0.25},
                         {"contributor": "bob", "group": 2, "rows": 1, "points": None}],
        "extra_fits": 1, "base_after": "round-1-group-1",
    }  # fmt: skip
    models = [
        {"name": c["name"], "path": c["path"], "group": c["group"], "parent": "tiny",
         "winner": c["group"] == 1, "evaluation": c["evaluation"]}
        for c in details["candidates"]
    ]  # fmt: skip
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            repo.claim_job(session, "w")
            repo.record_job_round(
                session, project, job_id=job, worker="w", candidate="sft", strategy="random",
                scheme="leave-one-out", winner="group 1", details=details, after=0,
                models=models, base_evaluation=NLL, new_base="round-1-group-1",
            )  # fmt: skip
    finally:
        engine.dispose()

    page = client.get(f"/projects/{project}/admin?job={job}").text
    assert 'data-state="succeeded"' in page and "No round has run yet." not in page
    table = page[page.index('id="round-table"') : page.index('id="lineage"')]
    assert "<td>sft</td>" in table and "<td>leave-one-out</td>" in table
    assert "<td>group 1: ann</td>" in table
    assert "NLL 2.250 (95% CI 2.000 to 2.500), -0.250 vs base (95% CI -0.375 to -0.125)" in table
    assert '<td title="tiny">NLL 2.500 (95% CI 2.250 to 2.750)</td>' in table
    assert "<td>yes</td>" in table and "<td>ann 0.25, bob –</td>" in table
    lineage = page[page.index('id="lineage-table"') :]
    rows = re.findall(r"<tr( class=\"me\")?>\s*<td>([^<]+)</td>", lineage)
    assert rows == [("", "tiny"), (' class="me"', "round-1-group-1"), ("", "round-1-group-2")]
    start = lineage.index("<td>round-1-group-1</td>")
    winner = lineage[start : lineage.index("</tr>", start)]
    assert "<td>1</td>" in winner and "<td>tiny</td>" in winner
    assert "NLL 2.250" in winner and "✓ base" in winner and "✓ winner" in winner

    # The leaderboard: ann's points, a dash for bob (leave-one-out left him unscored).
    board = client.get(f"{API}/projects/{project}/leaderboard",
                       headers={"Authorization": f"Bearer {tokens['root']}"}).json()  # fmt: skip
    assert {r["contributor"]: r["credit"] for r in board["contributors"]} == {
        "ann": 0.25,
        "bob": None,
    }
    assert "A dash: points no scheme scored" in board["credit_note"]
    page = client.get(f"/projects/{project}/leaderboard").text
    assert "<td>0.25</td>" in page and re.search(r"<td>bob</td>(.|\n)*<td>–</td>\s*</tr>", page)


def test_accumulated_points_skip_members_left_unscored():
    rounds = [
        {
            "contributors": [
                {"contributor": "a", "points": 1.0},
                {"contributor": "b", "points": None},
            ]
        },
        {"contributors": [{"contributor": "a", "points": 0.5}, {"contributor": "b", "points": 2}]},
        {"contributors": [{"contributor": "c", "points": None}]},
    ]
    assert accumulated_points(rounds) == {"a": 1.5, "b": 2.0}


def test_evaluation_text_of_each_metric():
    assert evaluation_text(None) == "–"
    assert evaluation_text({"metric": "accuracy", "value": 0.75, "diff": 0.25}) == (
        "accuracy 0.750, +0.250 vs base"
    )
    assert evaluation_text(NLL) == "NLL 2.500 (95% CI 2.250 to 2.750)"
