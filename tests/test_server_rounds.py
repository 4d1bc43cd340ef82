"""Crowd-SFT rounds on collected feedback: the pure round (groups, candidates scored on gold
items, winner, points of every scheme) on votes whose worth is known, and the API and admin page
that run rounds and show their credit on the leaderboard (SQLite and PostgreSQL)."""

import math
from typing import get_args

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crowdtune.crowd.feedback.learner import GoldLearner
from crowdtune.crowd.feedback.lm_round import MODEL_ROUND_SCHEMES
from crowdtune.crowd.feedback.round import (
    NO_INFORMATION,
    ROUND_MODELS,
    ROUND_SCHEMES,
    CurrentModel,
    RoundSettings,
    accumulated_points,
    run_feedback_round,
)
from crowdtune.crowd.feedback.weights import VOTE_WEIGHTS, annotator_weights
from crowdtune.crowd.grouping import STRATEGIES
from crowdtune.records import Comparison, comparisons_frame
from crowdtune.server import create_app
from crowdtune.server.schemas import (
    RoundCandidate,
    RoundModel,
    RoundScheme,
    RoundStrategy,
    RoundVoteWeights,
)
from crowdtune.server.services import ROUND_CANDIDATES
from crowdtune.store import ConflictError, NotFoundError, make_engine, session_factory, upgrade
from crowdtune.store import repository as repo
from crowdtune.store.models import Round
from crowdtune.worker import make_worker
from crowdtune.worker.rounds import CANDIDATE_KINDS
from test_server_pages import csrf_of, sign_in

API = "/api/v1"
# Response lengths of 200 items; the longer response is the right answer (the gold rule).
LENGTHS = np.random.default_rng(7).choice(np.arange(3, 80), size=(200, 2), replace=True)
LENGTHS[LENGTHS[:, 0] == LENGTHS[:, 1], 1] += 1
GOLD_ITEMS = range(12)
PLAIN_ITEMS = range(100, 130)


def truth(i):
    return "a" if LENGTHS[i, 0] > LENGTHS[i, 1] else "b"


def vote_for(kind, i):
    """fair voters give the gold rule's answer, contrary ones the other side, coins flip."""
    right = truth(i)
    if kind == "fair":
        return right
    if kind == "contrary":
        return "b" if right == "a" else "a"
    if kind == "tie":
        return "tie"
    return "ab"[(i * 7919 + len(kind)) % 2]


def item(i, verdict=None, who=None):
    return Comparison(
        id=f"q{i}/{who}",
        prompt=(f"question {i}",),
        response_a=("word " * LENGTHS[i, 0],),
        response_b=("text " * LENGTHS[i, 1],),
        verdict=verdict or truth(i),
        annotator=who,
    )


GOLD = [item(i) for i in GOLD_ITEMS]


def votes_of(voters, items=PLAIN_ITEMS):
    """Every voter votes on every item by its kind (the name's prefix, e.g. 'fair-1')."""
    return [item(i, vote_for(who.split("-")[0], i), who) for who in voters for i in items]


SIX = ["fair-1", "fair-2", "coin-1", "coin-2", "contrary-1", "contrary-2"]


# ---------------------------------------------------------------------------------------------
# the round itself


def test_fair_voters_win_and_earn_the_most_rank_points():
    result = run_feedback_round(votes_of(SIX), GOLD, settings=RoundSettings(n_groups=6, seed=0))
    points = result.points
    assert result.improved and result.base_source == NO_INFORMATION
    assert result.base_log_loss == pytest.approx(math.log(3))
    winner = result.candidates[result.winner - 1]
    assert winner.rank == 0 and winner.members[0].startswith("fair")
    assert winner.log_loss < result.base_log_loss and winner.accuracy == 1.0
    # one voter per group: G - rank pays 6, 5, ..., 1; fair > coin > contrary
    assert sorted(points.values()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert min(points["fair-1"], points["fair-2"]) > max(points["coin-1"], points["coin-2"])
    assert min(points["coin-1"], points["coin-2"]) > max(points["contrary-1"], points["contrary-2"])
    assert result.n_training_votes == 6 * len(PLAIN_ITEMS) and result.n_gold == len(GOLD)
    assert result.model_after["log_loss"] == winner.log_loss
    assert "winner of round 1" in result.model_after["source"]


def test_rank_points_pay_g_minus_rank_to_every_member():
    voters = [f"{kind}-{n}" for kind in ("fair", "coin", "contrary") for n in range(3)]
    result = run_feedback_round(votes_of(voters), GOLD, settings=RoundSettings(n_groups=3, seed=4))
    assert result.improved
    rank = {c.group: c.rank for c in result.candidates}
    assert sorted(rank.values()) == [0, 1, 2]
    for row in result.contributors:
        assert row.points == 3 - rank[row.group]
    expected = sum(len(c.members) * (3 - c.rank) for c in result.candidates)
    assert sum(result.points.values()) == expected == 3 * 3 + 3 * 2 + 3 * 1


def test_marginal_points_are_the_groups_gain_over_the_base():
    settings = RoundSettings(n_groups=3, scheme="marginal", seed=1)
    result = run_feedback_round(votes_of(SIX), GOLD, settings=settings)
    loss = {c.group: c.log_loss for c in result.candidates}
    for row in result.contributors:
        assert row.points == pytest.approx(result.base_log_loss - loss[row.group])


def test_the_same_seed_gives_the_same_round_and_a_drawn_seed_is_recorded():
    voters = [f"{kind}-{n}" for kind in ("fair", "coin", "contrary") for n in range(4)]
    votes = votes_of(voters)
    first = run_feedback_round(votes, GOLD, settings=RoundSettings(seed=11))
    assert run_feedback_round(votes, GOLD, settings=RoundSettings(seed=11)).to_dict() == (
        first.to_dict()
    )
    other = run_feedback_round(votes, GOLD, settings=RoundSettings(seed=12))
    assert other.groups != first.groups
    drawn = run_feedback_round(votes, GOLD)
    assert 0 <= drawn.seed < 2**63
    again = run_feedback_round(votes, GOLD, settings=RoundSettings(seed=drawn.seed))
    assert again.to_dict() == drawn.to_dict()


def test_shapley_points_add_up_to_each_groups_gain():
    settings = RoundSettings(n_groups=2, scheme="shapley", seed=5)
    result = run_feedback_round(votes_of(SIX), GOLD, settings=settings)
    for candidate in result.candidates:
        total = sum(result.points[name] for name in candidate.members)
        assert total == pytest.approx(result.base_log_loss - candidate.log_loss, abs=1e-9)
        assert result.credit_methods[candidate.group] == "exact(n=3)"
    assert result.extra_fits == 2 * (2**3 - 1)  # every non-empty coalition of both groups

    # one group of everyone: fair voters add value, contrary ones take it away
    alone = run_feedback_round(
        votes_of(SIX), GOLD, settings=RoundSettings(n_groups=1, scheme="shapley", seed=5)
    )
    points = alone.points
    assert (
        min(points["fair-1"], points["fair-2"])
        > 0
        > max(points["contrary-1"], points["contrary-2"])
    )
    assert sum(points.values()) == pytest.approx(
        alone.base_log_loss - alone.candidates[0].log_loss, abs=1e-9
    )


def test_shapley_samples_permutations_for_groups_too_large_to_enumerate():
    voters = [f"{kind}-{n}" for kind in ("fair", "coin", "contrary") for n in range(3)] + ["fair-9"]
    settings = RoundSettings(n_groups=1, scheme="shapley", seed=2, shapley_evaluations=66)
    result = run_feedback_round(votes_of(voters), GOLD, settings=settings)
    assert result.credit_methods[1].startswith("permutation")
    # every sampled permutation telescopes to v(N) - v(empty), so efficiency holds exactly
    assert sum(result.points.values()) == pytest.approx(
        result.base_log_loss - result.candidates[0].log_loss, abs=1e-9
    )
    assert result.extra_fits <= 66
    assert result.points["fair-9"] > result.points["contrary-0"]


def test_leave_one_out_pays_what_the_group_loses_without_the_member():
    voters = ["fair-1", "fair-2", "contrary-1"]
    settings = RoundSettings(n_groups=1, scheme="leave-one-out", seed=0)
    result = run_feedback_round(votes_of(voters), GOLD, settings=settings)
    assert result.points["fair-1"] > 0 > result.points["contrary-1"]
    assert result.extra_fits == 3  # one candidate without each member
    # without contrary-1 only the fair votes remain: the candidate gets better
    only_fair = run_feedback_round(
        votes_of(["fair-1", "fair-2"]), GOLD, settings=RoundSettings(n_groups=1, seed=0)
    )
    expected = result.candidates[0].log_loss - only_fair.candidates[0].log_loss
    assert result.points["contrary-1"] == pytest.approx(-expected)


def test_votes_on_gold_items_are_never_trained_on():
    votes = votes_of(["fair-1", "contrary-1"])
    # a contrary voter's gold answers, one of them on the item shown swapped
    gold_votes = votes_of(["contrary-1", "gold-only"], items=range(3))
    swapped = item(5, "a", "contrary-1").swapped()
    result = run_feedback_round(
        votes + gold_votes + [swapped], GOLD, settings=RoundSettings(n_groups=2, seed=0)
    )
    assert result.n_gold_votes_excluded == 7
    assert result.n_training_votes == len(votes)
    assert result.skipped == ["gold-only"]
    assert {row.contributor: row.votes for row in result.contributors} == {
        "fair-1": len(PLAIN_ITEMS),
        "contrary-1": len(PLAIN_ITEMS),
    }


def test_groups_that_cannot_train_get_a_reason_and_no_points():
    votes = votes_of(["fair-1", "tie-1"]) + votes_of(["coin-1"], items=range(100, 102))
    result = run_feedback_round(votes, GOLD, settings=RoundSettings(n_groups=3, seed=0))
    by_member = {c.members[0]: c for c in result.candidates}
    assert "min_votes=5" in by_member["coin-1"].reason and by_member["coin-1"].rank is None
    assert "tie" in by_member["tie-1"].reason and by_member["tie-1"].log_loss is None
    assert by_member["fair-1"].rank == 0 and by_member["fair-1"].reason is None
    assert result.points == {"coin-1": 0.0, "fair-1": 3.0, "tie-1": 0.0}


def test_groups_follow_the_points_of_earlier_rounds():
    voters = ["fair-1", "fair-2", "coin-1", "coin-2"]
    points = {"fair-1": 10.0, "fair-2": 9.0, "coin-1": 0.0, "coin-2": 1.0}
    for seed in range(4):
        settings = RoundSettings(n_groups=2, strategy="interleaved", seed=seed)
        groups = run_feedback_round(votes_of(voters), GOLD, points=points, settings=settings).groups
        assert groups["fair-1"] != groups["fair-2"] and groups["coin-1"] != groups["coin-2"]


def test_the_base_is_the_model_the_last_round_left_on_the_same_gold_items():
    first = run_feedback_round(votes_of(SIX), GOLD, settings=RoundSettings(n_groups=6, seed=0))
    current = CurrentModel.after(first.to_dict())
    # later votes only from coin and contrary voters cannot beat the fair voter's model
    worse = votes_of(SIX[2:])
    second = run_feedback_round(
        worse, GOLD, settings=RoundSettings(n_groups=2, seed=1), current=current, round_index=1
    )
    assert second.round_number == 2
    assert second.base_log_loss == first.model_after["log_loss"]
    assert second.base_source == f"the winner of round 1 (group {first.winner})"
    assert not second.improved and set(second.points.values()) == {0.0}
    assert second.model_after == {**first.model_after}
    changed = run_feedback_round(
        worse, GOLD[:-1], settings=RoundSettings(n_groups=2, seed=1), current=current
    )
    assert changed.base_log_loss == pytest.approx(math.log(3))
    assert "gold items changed" in changed.base_source
    assert accumulated_points([first.to_dict(), second.to_dict(), changed.to_dict()]) == {
        name: first.points[name] + changed.points.get(name, 0.0) for name in SIX
    }


def test_rounds_that_cannot_run_say_why():
    votes = votes_of(["fair-1", "fair-2"])
    with pytest.raises(ValueError, match="no gold items.*import items with a 'gold' answer"):
        run_feedback_round(votes, [])
    with pytest.raises(ValueError, match="n_groups is 3 but only 2 contributor"):
        run_feedback_round(votes, GOLD, settings=RoundSettings(n_groups=3))
    with pytest.raises(ValueError, match="n_groups is 1 but only 0 contributor"):
        run_feedback_round(
            votes_of(["fair-1"], GOLD_ITEMS), GOLD, settings=RoundSettings(n_groups=1)
        )
    with pytest.raises(ValueError, match="no group could train a candidate.*group 1: every vote"):
        run_feedback_round(votes_of(["tie-1"]), GOLD, settings=RoundSettings(n_groups=1))
    with pytest.raises(ValueError, match="unknown strategy 'best'; choose one of: random"):
        RoundSettings(strategy="best")
    with pytest.raises(ValueError, match="unknown point scheme 'regression'"):
        RoundSettings(scheme="regression")
    with pytest.raises(ValueError, match="n_groups must be an integer of at least 1"):
        RoundSettings(n_groups=0)


def test_the_api_offers_exactly_the_rounds_choices():
    assert get_args(RoundStrategy) == STRATEGIES
    assert ROUND_CANDIDATES["preference"][1] == ROUND_SCHEMES
    assert set(get_args(RoundScheme)) == {
        s for _, offered in ROUND_CANDIDATES.values() for s in offered
    }
    assert get_args(RoundModel) == ROUND_MODELS
    assert get_args(RoundVoteWeights) == VOTE_WEIGHTS
    assert set(get_args(RoundCandidate)) == set(ROUND_CANDIDATES)
    # The worker's own check of the project kind, and the language-model rounds' schemes.
    assert {name: kind for name, (kind, _) in ROUND_CANDIDATES.items()} == CANDIDATE_KINDS
    assert ROUND_CANDIDATES["sft"][1] == ROUND_CANDIDATES["dpo"][1] == MODEL_ROUND_SCHEMES


def test_dawid_skene_vote_weights_give_the_contrarian_nothing():
    """A simulated crowd: three fair voters, a coin and a contrarian, each voting on every item.
    Weighted by reliability, the contrarian's votes weigh 0 and the coin's about 0, so a group
    of a fair voter and the contrarian trains what the fair voter's votes say."""
    voters = ["fair-1", "fair-2", "fair-3", "coin-1", "contrary-1"]
    votes = votes_of(voters)
    weights = annotator_weights(comparisons_frame(votes), "dawid-skene")
    assert weights["contrary-1"] == 0.0 and weights["coin-1"] < 0.2
    assert min(weights[f"fair-{k}"] for k in (1, 2, 3)) > 0.8
    assert annotator_weights(comparisons_frame(votes), "none") is None

    learner = GoldLearner("length", comparisons_frame(GOLD), base_log_loss=math.log(3),
                          min_votes=5, uniform_mix=0.01, seed=0)  # fmt: skip
    pair = comparisons_frame(votes_of(["fair-1", "contrary-1"]))
    mixed = learner.log_loss(learner.fit(None, pair))  # the two cancel out: no better than 1/3
    weighted = learner.fit(None, pair.assign(weight=pair.annotator.map(weights)))
    assert learner.log_loss(weighted) < mixed - 0.2
    alone = comparisons_frame(votes_of(["contrary-1"]))
    assert "with a reliability weight above 0" in learner.why_not(alone.assign(weight=0.0))

    settings = RoundSettings(n_groups=5, seed=0, vote_weights="dawid-skene")
    result = run_feedback_round(votes, GOLD, settings=settings)
    assert result.annotator_weights == pytest.approx(weights)
    own = {c.members[0]: c for c in result.candidates}  # five groups of one
    assert own["contrary-1"].log_loss is None and "reliability weight" in own["contrary-1"].reason
    assert result.to_dict()["settings"]["vote_weights"] == "dawid-skene"
    plain = run_feedback_round(votes, GOLD, settings=RoundSettings(n_groups=5, seed=0))
    assert plain.annotator_weights is None
    assert {c.members[0]: c for c in plain.candidates}["contrary-1"].log_loss is not None
    with pytest.raises(ValueError, match="unknown vote weights 'kappa'"):
        RoundSettings(vote_weights="kappa")


def test_the_api_takes_vote_weights_and_the_worker_applies_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client)
        rounds = f"{API}/projects/{project}/rounds"
        reply = client.post(rounds, json={"vote_weights": "kappa"}, headers=auth["root"])
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "vote_weights"]
        body = {"n_groups": 4, "seed": 1, "vote_weights": "dawid-skene"}
        stored = queue_and_run(client, url, tmp_path, project, body, auth["root"])
        assert stored["settings"]["vote_weights"] == "dawid-skene"
        weights = stored["annotator_weights"]
        assert weights["contrary-1"] == 0.0 and min(weights[f"fair-{k}"] for k in (1, 2, 3)) > 0.8
        own = {c["members"][0]: c for c in stored["candidates"]}
        assert own["contrary-1"]["log_loss"] is None and own["fair-1"]["log_loss"] is not None
        plain = queue_and_run(client, url, tmp_path, project, {"n_groups": 4, "seed": 1},
                              auth["root"])  # fmt: skip
        assert plain["settings"]["vote_weights"] == "none" and plain["annotator_weights"] is None


def run_jobs(url, folder):
    """Run the queued jobs the way `crowdtune worker` does, in this process; their ids."""
    worker = make_worker(url, models_dir=folder / "models", name="test-worker")
    ran = []
    try:
        while (job := worker.run_once()) is not None:
            ran.append(job)
    finally:
        worker.engine.dispose()
    return ran


def queue_and_run(client, url, folder, project, body, headers):
    """POST a round (202), run it in the worker, and return the stored round and its job."""
    reply = client.post(f"{API}/projects/{project}/rounds", json=body, headers=headers)
    assert reply.status_code == 202, reply.text
    queued = reply.json()
    assert queued["state"] == "queued"
    assert run_jobs(url, folder) == [queued["job_id"]]
    job = client.get(f"{API}/jobs/{queued['job_id']}", headers=headers).json()
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["result"]["round"] == queued["round"]
    stored = client.get(f"{API}/projects/{project}/rounds", headers=headers).json()[-1]
    assert stored["round_number"] == queued["round"] and stored["job_id"] == queued["job_id"]
    return stored


# ---------------------------------------------------------------------------------------------
# the API and the pages

VOTERS = {"fair-1": "fair", "fair-2": "fair", "fair-3": "fair", "contrary-1": "contrary"}


def campaign(url, client, voters=VOTERS, gold=True):
    """An admin, the voters, and a project whose gold and plain items every voter answered
    through the store's assignment; returns (project id, auth headers by name)."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tokens = {"root": repo.create_contributor(session, "root", "admin")[1]}
            ids = {}
            for name in voters:
                contributor, tokens[name] = repo.create_contributor(session, name)
                ids[name] = contributor.id
        auth = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
        reply = client.post(
            f"{API}/projects", json={"name": "rounds", "overlap": len(voters)}, headers=auth["root"]
        )
        project = reply.json()["id"]
        items = [
            {"prompt": list(c.prompt), "response_a": list(c.response_a),
             "response_b": list(c.response_b), "gold": truth(i) if gold and c in GOLD else None}
            for i in [*GOLD_ITEMS, *PLAIN_ITEMS]
            for c in [item(i)]
        ]  # fmt: skip
        reply = client.post(f"{API}/projects/{project}/items", json=items, headers=auth["root"])
        assert reply.status_code == 201, reply.text
        with session_factory(engine)() as session:
            for name, kind in voters.items():
                while (task := repo.next_task(session, project, ids[name])) is not None:
                    number = int(task.item.prompt[0].split()[-1])
                    repo.submit_response(
                        session, task.id, ids[name], verdict=vote_for(kind, number)
                    )
    finally:
        engine.dispose()
    return project, auth


def check_rounds_api(url, folder):
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client)
        root = auth["root"]
        board = client.get(f"{API}/projects/{project}/leaderboard", headers=root).json()
        assert {row["credit"] for row in board["contributors"]} == {None}
        assert "none has run yet" in board["credit_note"]

        body = {"strategy": "random", "scheme": "rank", "n_groups": 2, "seed": 3}
        first = queue_and_run(client, url, folder, project, body, root)
        assert first["candidate"] == "preference" and first["base_changed"] is True
        assert first["round_number"] == 1 and first["seed"] == 3 and first["model"] == "length"
        assert first["n_gold"] == len(GOLD_ITEMS) and first["n_votes"] == 4 * 42
        assert first["n_gold_votes_excluded"] == 4 * len(GOLD_ITEMS)
        assert first["improved"] is True
        # 3 fair voters and 1 contrary in 2 groups of 2: the pair of fair voters wins
        winner = first["candidates"][first["winner"] - 1]
        assert winner["rank"] == 0 and all(m.startswith("fair") for m in winner["members"])
        points = {row["contributor"]: row["points"] for row in first["contributors"]}
        assert sum(points.values()) == 2 * 2 + 2 * 1 and points["contrary-1"] == 1.0

        listed = client.get(f"{API}/projects/{project}/rounds", headers=root)
        assert listed.status_code == 200
        assert listed.json() == [first]
        board = client.get(f"{API}/projects/{project}/leaderboard", headers=auth["fair-1"]).json()
        assert {row["contributor"]: row["credit"] for row in board["contributors"]} == points
        assert "1 Crowd-SFT round(s)" in board["credit_note"] and "rank:" in board["credit_note"]

        assert first["points"] == points
        body = {"scheme": "shapley", "n_groups": 2, "seed": 4}
        second = queue_and_run(client, url, folder, project, body, root)
        assert second["round_number"] == 2
        assert second["base_log_loss"] == first["model_after"]["log_loss"]
        board = client.get(f"{API}/projects/{project}/leaderboard", headers=root).json()
        for row in board["contributors"]:
            earned = [r["points"] for r in (first, second) for r in r["contributors"]
                      if r["contributor"] == row["contributor"]]  # fmt: skip
            assert row["credit"] == pytest.approx(sum(earned))
        assert "rank:" in board["credit_note"] and "shapley:" in board["credit_note"]

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.scalars(select(Round).order_by(Round.id)).all()
            assert [(r.strategy, r.scheme) for r in rows] == [
                ("random", "rank"),
                ("random", "shapley"),
            ]
            assert rows[0].winner == f"group {first['winner']}"
            # The API adds the other kinds' fields as null (a contributor's training "rows").
            pairs = zip(first["contributors"], rows[0].details["contributors"], strict=True)
            shown = [{k: row[k] for k in stored} for row, stored in pairs]
            assert rows[0].details["contributors"] == shown
            assert all(row["rows"] is None for row in first["contributors"])
    finally:
        engine.dispose()


def test_admins_run_rounds_that_credit_the_leaderboard(tmp_path):
    check_rounds_api(f"sqlite:///{tmp_path / 'rounds.db'}", tmp_path)


@pytest.mark.postgres
def test_rounds_on_postgresql(postgres_url, tmp_path):
    check_rounds_api(postgres_url, tmp_path)


def test_rounds_are_for_admins_and_bad_settings_are_422(tmp_path):
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client)
        rounds = f"{API}/projects/{project}/rounds"
        for method in (client.get, client.post):
            kwargs = {"json": {}} if method == client.post else {}
            assert method(rounds, headers=auth["fair-1"], **kwargs).status_code == 403
            assert method(rounds, **kwargs).status_code == 401
        reply = client.post(rounds, json={"strategy": "best"}, headers=auth["root"])
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "strategy"]
        # What only the round itself finds out fails its job, saying why.
        reply = client.post(rounds, json={"n_groups": 5}, headers=auth["root"])
        assert reply.status_code == 202
        job = reply.json()["job_id"]
        # One round at a time per project.
        again = client.post(rounds, json={}, headers=auth["root"])
        assert again.status_code == 409 and f"round job {job} " in again.json()["detail"]
        assert run_jobs(url, tmp_path) == [job]
        failed = client.get(f"{API}/jobs/{job}", headers=auth["root"]).json()
        assert failed["state"] == "failed"
        assert "n_groups is 5 but only 4 contributor(s)" in failed["message"]
        assert client.get(f"{API}/jobs/{job}", headers=auth["fair-1"]).status_code == 403
        assert client.get(f"{API}/jobs/999", headers=auth["root"]).status_code == 404
        for wrong in ({"candidate": "sft"}, {"scheme": "regression"}):
            reply = client.post(rounds, json=wrong, headers=auth["root"])
            assert reply.status_code == 422, wrong
        assert (
            "sft rounds need a revision project"
            in client.post(rounds, json={"candidate": "sft"}, headers=auth["root"]).json()["detail"]
        )
        assert (
            client.post(rounds, json={"model": "transformer"}, headers=auth["root"]).status_code
            == 422
        )
        reply = client.post(f"{API}/projects/999/rounds", json={}, headers=auth["root"])
        assert reply.status_code == 404
        assert client.get(rounds, headers=auth["root"]).json() == []


def test_a_round_needs_gold_items(tmp_path):
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client, gold=False)
        reply = client.post(f"{API}/projects/{project}/rounds", json={}, headers=auth["root"])
        assert reply.status_code == 422
        assert "no gold items" in reply.json()["detail"]
        assert "'gold' answer" in reply.json()["detail"]


def test_the_admin_page_runs_a_round_and_the_leaderboard_shows_credit(tmp_path):
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client)
        tokens = {name: header["Authorization"].split()[1] for name, header in auth.items()}
        sign_in(client, tokens["root"])
        page = client.get(f"/projects/{project}/admin")
        assert "Run a round" in page.text and "No round has run yet." in page.text
        assert '<option value="epsilon-greedy">' in page.text
        form = {"strategy": "interleaved", "scheme": "rank", "model": "length", "n_groups": "2"}
        assert client.post(f"/projects/{project}/admin/rounds", data=form).status_code == 403
        reply = client.post(
            f"/projects/{project}/admin/rounds",
            data={**form, "csrf_token": csrf_of(page.text), "seed": "8"},
            follow_redirects=False,
        )
        assert reply.status_code == 303, reply.text
        assert reply.headers["location"] == f"/projects/{project}/admin?job=1#rounds"
        assert run_jobs(url, tmp_path) == [1]
        page = client.get(reply.headers["location"])
        assert "<td>interleaved</td>" in page.text
        bad = {**form, "n_groups": "200", "csrf_token": csrf_of(page.text)}
        reply = client.post(f"/projects/{project}/admin/rounds", data=bad)
        assert reply.status_code == 422 and "n_groups" in reply.text

        board = client.get(f"/projects/{project}/leaderboard")
        assert "1 Crowd-SFT round(s)" in board.text
        credit = client.get(f"{API}/projects/{project}/leaderboard", headers=auth["root"]).json()
        for row in credit["contributors"]:
            assert f"<td>{row['credit']:.4g}</td>" in board.text

        annotator = TestClient(client.app)
        sign_in(annotator, tokens["fair-1"])
        own_csrf = csrf_of(annotator.get("/projects").text)
        reply = annotator.post(
            f"/projects/{project}/admin/rounds", data={**form, "csrf_token": own_csrf}
        )
        assert reply.status_code == 403 and "needs the role admin" in reply.text


def test_a_round_computed_before_another_was_stored_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            project = repo.create_project(session, "race", overlap=1)
            record = {"strategy": "random", "scheme": "rank", "winner": "group 1", "details": {}}
            repo.record_round(session, project.id, after=0, **record)
            # A second round that also started from 0 stored rounds finishes later: refused.
            with pytest.raises(ConflictError, match="another round of project"):
                repo.record_round(session, project.id, after=0, **record)
            repo.record_round(session, project.id, after=1, **record)
            assert len(repo.project_rounds(session, project.id)) == 2
            with pytest.raises(NotFoundError):
                repo.record_round(session, 999, after=0, **record)
    finally:
        engine.dispose()
