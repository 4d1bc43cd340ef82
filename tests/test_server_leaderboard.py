"""No leaks to annotators: an annotator who diffs the leaderboard before and after each vote
learns nothing about the item it just answered (not whether it is gold, not whether it was
right, not what the others voted); figures appear once items close, over a handful of them;
admins see everything (SQLite and PostgreSQL)."""

import pytest
from fastapi.testclient import TestClient

from crowdtune.records import Verdict
from crowdtune.server import create_app
from crowdtune.server.scoring import MIN_CLOSED_ITEMS, contributor_breakdown
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.repository import Vote, create_contributor

API = "/api/v1"
#: The figures that must not move when an annotator votes on an open item.
FIGURES = ("gold_answered", "gold_correct", "gold_accuracy", "majority_agreement")
N_GOLD, N_SHARED = 5, 14


def crowd(url):
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            people = [("root", "admin"), ("ann", "annotator"), ("bob", "annotator"),
                      ("cat", "annotator")]  # fmt: skip
            tokens = {name: create_contributor(session, name, role)[1] for name, role in people}
    finally:
        engine.dispose()
    return {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}


def board(client, headers, project):
    reply = client.get(f"{API}/projects/{project}/leaderboard", headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def figures(board):
    return {row["contributor"]: {k: row[k] for k in FIGURES} for row in board["contributors"]}


def vote_next(client, headers, project, verdict):
    task = client.get(f"{API}/projects/{project}/tasks/next", headers=headers)
    assert task.status_code == 200, task.text
    task = task.json()
    reply = client.post(
        f"{API}/tasks/{task['task_id']}/responses", json={"verdict": verdict}, headers=headers
    )
    assert reply.status_code == 201, reply.text
    return task["item"]["prompt"]


def test_an_annotator_diffing_its_row_learns_nothing_until_items_close(url):
    auth = crowd(url)
    with TestClient(create_app(url)) as client:
        # Breadth-first: the order below is the least assigned item first, lowest id first.
        body = {"name": "p", "overlap": 3, "assignment": "breadth"}
        project = client.post(f"{API}/projects", json=body, headers=auth["root"]).json()["id"]
        items = [{"prompt": f"gold {i}", "response_a": "x", "response_b": "y", "gold": "a"}
                 for i in range(N_GOLD)]  # fmt: skip
        items += [{"prompt": f"open {i}", "response_a": "x", "response_b": "y"}
                  for i in range(N_SHARED)]  # fmt: skip
        reply = client.post(f"{API}/projects/{project}/items", json=items, headers=auth["root"])
        assert reply.status_code == 201, reply.text

        learned = {"gold": 0, "majority": 0}
        changed = []  # (item, whose row) whose figures moved when ann voted on it

        def ann_votes(verdict):
            """ann votes on an item that stays open, diffing the board as ann sees it."""
            before = figures(board(client, auth["ann"], project))
            prompt = vote_next(client, auth["ann"], project, verdict)
            after = board(client, auth["ann"], project)
            mine = next(r for r in after["contributors"] if r["contributor"] == "ann")
            # the item was counted: as gold answered, or as one with a clear majority of others
            was = before.get("ann", {"gold_answered": None, "majority_agreement": {"n": None}})
            learned["gold"] += (mine["gold_answered"] or 0) > (was["gold_answered"] or 0)
            n, n_was = mine["majority_agreement"]["n"], was["majority_agreement"]["n"]
            learned["majority"] += (n or 0) > (n_was or 0)
            hidden = {"gold_answered": None, "gold_correct": None, "gold_accuracy": None,
                      "majority_agreement": {"share": None, "n": None}}  # fmt: skip
            changed.extend(
                (prompt, name) for name, row in figures(after).items()
                if row != before.get(name, hidden)
            )  # fmt: skip
            return prompt

        # ann answers the gold items first (assignment: least assigned, lowest id), right on 3
        assert [ann_votes("a" if i < 3 else "b") for i in range(N_GOLD)] == [
            f"gold {i}" for i in range(N_GOLD)
        ]
        # bob answers the others first, then ann: the others' majority on each is bob's vote
        bob = [vote_next(client, auth["bob"], project, "ab"[i % 2]) for i in range(N_SHARED)]
        assert bob == [f"open {i}" for i in range(N_SHARED)]
        assert [ann_votes("a") for _ in range(N_SHARED)] == bob
        # the finding: today's code told ann 5 of 5 gold items and 14 of 14 majorities
        assert learned == {"gold": 0, "majority": 0}, learned
        assert changed == []

        # admins see everything at once
        admin = figures(board(client, auth["root"], project))["ann"]
        assert admin["gold_answered"] == N_GOLD and admin["gold_correct"] == 3
        assert admin["majority_agreement"] == {"share": 0.5, "n": N_SHARED}

        # cat answers the gold items, then bob closes them one by one: ann's figures appear
        # with the fifth closed item
        assert [vote_next(client, auth["cat"], project, "a") for _ in range(N_GOLD)] == [
            f"gold {i}" for i in range(N_GOLD)
        ]
        for closed in range(1, MIN_CLOSED_ITEMS + 1):
            assert vote_next(client, auth["bob"], project, "a") == f"gold {closed - 1}"
            mine = figures(board(client, auth["ann"], project))["ann"]
            if closed < MIN_CLOSED_ITEMS:
                assert mine["gold_answered"] is None and mine["gold_accuracy"] is None
            else:
                assert mine["gold_answered"] == N_GOLD and mine["gold_correct"] == 3
                assert mine["gold_accuracy"] == pytest.approx(0.6)
                assert mine["majority_agreement"] == {"share": 0.6, "n": N_GOLD}
        view = board(client, auth["ann"], project)
        assert (
            "closed items" in view["quality_note"]
            and "admin" in board(client, auth["root"], project)["quality_note"]
        )

        # the page shows the same, with the note
        page = TestClient(client.app)
        form = page.get("/").text
        nonce = form.split('name="csrf_token" value="')[1].split('"')[0]
        token = auth["ann"]["Authorization"].split()[1]
        page.post("/signin", data={"token": token, "csrf_token": nonce})
        html = page.get(f"/projects/{project}/leaderboard").text
        assert "closed items" in html and "<td>ann</td>" in html


def test_the_breakdown_hides_open_items_and_small_counts():
    def vote(item, who, verdict, gold=None):
        return Vote(item, item, who, f"p{who}", Verdict[verdict], gold and Verdict[gold])

    # six gold items with two votes each (closed at overlap 2), one with a single vote (open)
    votes = [v for item in range(6) for v in (vote(item, 1, "A", "A"), vote(item, 2, "B", "A"))]
    votes.append(vote(6, 1, "B", "B"))
    admin = {r["contributor"]: r for r in contributor_breakdown(votes)}
    shown = {r["contributor"]: r for r in contributor_breakdown(votes, overlap=2)}
    assert admin["p1"]["gold_answered"] == 7 and shown["p1"]["gold_answered"] == 6
    assert shown["p1"]["votes"] == 7 and shown["p1"]["gold_correct"] == 6
    assert shown["p1"]["majority_agreement"] == {"share": 0.0, "n": 6}
    # fewer than MIN_CLOSED_ITEMS closed items: blank, not zero
    few = contributor_breakdown(votes[: 2 * (MIN_CLOSED_ITEMS - 1)], overlap=2)
    assert all(r["gold_answered"] is None and r["majority_agreement"]["n"] is None for r in few)
