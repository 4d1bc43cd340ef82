"""What the API and the web pages share (crowdtune.server.services): one role check, one map
from store errors to statuses, and the same stats, leaderboard and vote on both sides."""

import re

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from crowdtune.server import create_app
from crowdtune.server.services import check_role, error_status
from crowdtune.store import BusyError, ConflictError, ForbiddenError, NotFoundError, StoreError
from test_server_api import people
from test_server_pages import ITEMS, csrf_of, sign_in

API = "/api/v1"


@pytest.mark.parametrize(
    ("error", "status"),
    [(NotFoundError, 404), (ForbiddenError, 403), (ConflictError, 409), (BusyError, 503),
     (StoreError, 500)],
)  # fmt: skip
def test_every_store_error_has_one_status(error, status):
    assert error_status(error("x")) == status


def test_the_role_check_names_the_roles_needed():
    check_role("admin", ("annotator", "admin"))
    with pytest.raises(HTTPException, match="this page needs the role admin; you are annotator"):
        check_role("annotator", ("admin",), what="this page")


def test_api_and_pages_answer_alike(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    auth = people(url)
    tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
    with TestClient(create_app(url)) as api:
        project = api.post(f"{API}/projects", json={"name": "p"}, headers=auth["root"]).json()["id"]
        assert api.post(f"{API}/projects/{project}/items", json=ITEMS,
                        headers=auth["root"]).status_code == 201  # fmt: skip

        # the role check: the same words from the API and a page (asked for JSON)
        reply = api.get(f"{API}/projects/{project}/stats", headers=auth["ann"])
        assert reply.status_code == 403
        assert reply.json() == {"detail": "this needs the role admin; you are annotator"}
        page = TestClient(api.app)
        sign_in(page, tokens["ann"])
        reply = page.get(f"/projects/{project}/admin", headers={"Accept": "application/json"})
        assert reply.status_code == 403
        assert reply.json() == {"detail": "this page needs the role admin; you are annotator"}

        # a vote through the page answers the API's fields (plus the page's own)
        html = page.get(f"/projects/{project}/annotate").text
        task = int(re.search(r"/tasks/(\d+)/vote", html).group(1))
        headers = {"X-CSRF-Token": csrf_of(html), "Idempotency-Key": f"task-{task}"}
        reply = page.post(f"/projects/{project}/tasks/{task}/vote", json={"verdict": "b"},
                          headers=headers)  # fmt: skip
        assert reply.status_code == 201
        assert reply.json()["task_id"] == task and reply.json()["verdict"] == "b"
        # someone else's task is 403 through the API too
        reply = api.post(f"{API}/tasks/{task}/responses", json={"verdict": "b"},
                         headers=auth["bob"])  # fmt: skip
        assert reply.status_code == 403 and "another contributor" in reply.json()["detail"]

        # stats: the admin page shows the reason the API gives for no agreement yet
        stats = api.get(f"{API}/projects/{project}/stats", headers=auth["root"]).json()
        assert stats["agreement"] is None and stats["progress"]["responses"] == 1
        admin = TestClient(api.app)
        sign_in(admin, tokens["root"])
        assert (
            f"Not available: {stats['agreement_reason']}"
            in admin.get(f"/projects/{project}/admin").text
        )

        # leaderboard: the page's rows are the API's
        board = api.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"]).json()
        assert [row["contributor"] for row in board["contributors"]] == ["ann"]
        text = page.get(f"/projects/{project}/leaderboard").text
        assert "<td>ann</td>" in text and board["credit_note"] in text
