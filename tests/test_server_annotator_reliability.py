"""Each contributor's Dawid–Skene reliability on a pairwise project: in the admin's stats and on
the admin page, never shown to annotators (the stats and the admin page are admin-only), null
with a reason before two contributors share an item and for the other kinds."""

import re

import pytest
from fastapi.testclient import TestClient

from crowdtune.server import create_app
from crowdtune.store import make_engine, session_factory
from crowdtune.store.repository import create_contributor
from test_server_api import people
from test_server_pages import sign_in

API = "/api/v1"
N_ITEMS = 12
#: How each annotator votes: right (the gold side), or the other side.
VOTERS = {"ann": "right", "bob": "right", "cat": "right", "dan": "contrarian"}


def truth(prompt: str) -> str:
    return "a" if int(prompt.split()[-1]) % 2 == 0 else "b"


@pytest.fixture
def campaign(tmp_path):
    """A pairwise project with overlap 4; three annotators vote the truth, dan the opposite.
    Returns the API client, the auth headers and tokens by name, and the project id."""
    url = f"sqlite:///{tmp_path / 'reliability.db'}"
    auth = people(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        for name in ("cat", "dan"):
            auth[name] = {"Authorization": f"Bearer {create_contributor(session, name)[1]}"}
    engine.dispose()
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    with TestClient(create_app(url)) as client:
        reply = client.post(f"{API}/projects", json={"name": "p", "overlap": 4},
                            headers=auth["root"])  # fmt: skip
        project = reply.json()["id"]
        items = [{"prompt": f"question {i}", "response_a": f"first {i}",
                  "response_b": f"second {i}", "id": f"q{i}"} for i in range(N_ITEMS)]  # fmt: skip
        assert client.post(f"{API}/projects/{project}/items", json=items,
                           headers=auth["root"]).status_code == 201  # fmt: skip
        yield client, auth, tokens, project


def vote_all(client, auth, project, name):
    while True:
        reply = client.get(f"{API}/projects/{project}/tasks/next", headers=auth[name])
        if reply.status_code == 204:
            return
        task = reply.json()
        right = truth(task["item"]["prompt"])
        verdict = right if VOTERS[name] == "right" else {"a": "b", "b": "a"}[right]
        reply = client.post(f"{API}/tasks/{task['task_id']}/responses",
                            json={"verdict": verdict}, headers=auth[name])  # fmt: skip
        assert reply.status_code == 201, reply.text


def test_admins_see_each_contributors_reliability(campaign):
    client, auth, tokens, project = campaign
    stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
    assert stats["reliability"] is None and stats["reliability_reason"] == "no votes yet"

    vote_all(client, auth, project, "ann")  # one voter: nothing shared yet
    stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
    assert stats["reliability"] is None
    assert "two different contributors" in stats["reliability_reason"]

    for name in ("bob", "cat", "dan"):
        vote_all(client, auth, project, name)
    stats = client.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
    reliability = stats["reliability"]
    assert stats["reliability_reason"] is None
    assert reliability["model"] == "dawid-skene" and reliability["n_votes"] == 4 * N_ITEMS
    assert reliability["n_bootstrap"] == 100 and "items" not in reliability
    rows = reliability["annotators"]
    assert [row["annotator"] for row in rows][0] == "dan"  # least reliable first
    by_name = {row["annotator"]: row for row in rows}
    assert by_name["dan"]["accuracy"] < 0.3 and by_name["ann"]["accuracy"] > 0.7
    for row in rows:
        assert row["n_votes"] == N_ITEMS
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        assert len(row["confusion"]) == 3

    # annotators see neither the stats nor the admin page, and the leaderboard has no reliability
    assert client.get(f"{API}/projects/{project}/stats", headers=auth["ann"]).status_code == 403
    board = client.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"]).json()
    assert not any("reliability" in key for row in board["contributors"] for key in row)
    page = TestClient(client.app)
    sign_in(page, tokens["ann"])
    assert page.get(f"/projects/{project}/admin").status_code == 403

    # the admin page's table: contributor, accuracy, CI, votes, in the API's order
    admin = TestClient(client.app)
    sign_in(admin, tokens["root"])
    html = admin.get(f"/projects/{project}/admin").text
    table = html[html.index('id="reliability"') :]
    cells = re.findall(r"<tr><td>(\w+)</td><td>([\d.]+)</td><td>([\d.]+) to ([\d.]+)</td>"
                       r"<td>(\d+)</td></tr>", table)  # fmt: skip
    assert [c[0] for c in cells] == [row["annotator"] for row in rows]
    assert cells[0][1] == f"{rows[0]['accuracy']:.3f}" and cells[0][4] == str(N_ITEMS)


def test_reliability_is_for_pairwise_projects(campaign):
    client, auth, tokens, _ = campaign
    reply = client.post(f"{API}/projects", json={"name": "r", "kind": "rating", "overlap": 2},
                        headers=auth["root"])  # fmt: skip
    assert reply.status_code == 201, reply.text
    stats = client.get(f"{API}/projects/{reply.json()['id']}/stats", headers=auth["root"]).json()
    assert stats["reliability"] is None and "pairwise" in stats["reliability_reason"]
    admin = TestClient(client.app)
    sign_in(admin, tokens["root"])
    assert 'id="reliability"' not in admin.get(f"/projects/{reply.json()['id']}/admin").text


def test_the_reliability_fit_is_reused_until_the_votes_change(campaign, monkeypatch):
    import crowdtune.server.signals as signals

    fits = []
    fit = signals.dawid_skene
    monkeypatch.setattr(signals, "dawid_skene", lambda *a, **k: fits.append(1) or fit(*a, **k))
    client, auth, tokens, project = campaign
    for name in ("ann", "bob", "cat"):
        vote_all(client, auth, project, name)
    stats = f"{API}/projects/{project}/stats"
    first = client.get(stats, headers=auth["root"]).json()["reliability"]
    assert len(fits) == 1 and first["n_votes"] == 3 * N_ITEMS
    assert client.get(stats, headers=auth["root"]).json()["reliability"] == first
    admin = TestClient(client.app)
    sign_in(admin, tokens["root"])
    assert 'id="reliability"' in admin.get(f"/projects/{project}/admin").text
    assert len(fits) == 1  # the second view and the admin page reused the fit

    task = client.get(f"{API}/projects/{project}/tasks/next", headers=auth["dan"]).json()
    reply = client.post(f"{API}/tasks/{task['task_id']}/responses", json={"verdict": "tie"},
                        headers=auth["dan"])  # fmt: skip
    assert reply.status_code == 201
    after = client.get(stats, headers=auth["root"]).json()["reliability"]
    assert len(fits) == 2 and after["n_votes"] == 3 * N_ITEMS + 1  # a new vote refits
    assert client.app.state.reliability_cache.fits == 2


def test_concurrent_views_of_one_state_fit_once_and_old_projects_drop_out():
    import time
    from concurrent.futures import ThreadPoolExecutor

    from crowdtune.server.fit_cache import FitCache

    cache = FitCache(max_projects=2)

    def slow():
        time.sleep(0.2)
        return object()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cache.get(1, "v1", slow), range(4)))
    assert cache.fits == 1 and all(r is results[0] for r in results)
    assert cache.get(1, "v2", slow) is not results[0] and cache.fits == 2  # new state: refit
    cache.get(2, "v1", slow), cache.get(3, "v1", slow)  # project 1 is the least recent
    assert cache.fits == 4 and cache.get(1, "v2", slow) is not None and cache.fits == 5
