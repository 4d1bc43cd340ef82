"""The reward-model win rate of a language-model round (issue 20): a tiny reward model judges
the candidates' and the base's greedy answers to the gold prompts; ``select_by="reward"`` picks
the winner by it; a missing reward model fails before anything trains; the API passes the
option to sft and dpo rounds only."""

import json
import random
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from fastapi.testclient import TestClient

from crowdtune.crowd.feedback.lm_credit import regression_points
from crowdtune.crowd.feedback.lm_reward import SELECT_BY
from crowdtune.crowd.feedback.lm_round import ModelRoundSettings, run_model_round
from crowdtune.server import create_app
from crowdtune.server.schemas import RoundSelectBy
from crowdtune.store import make_engine, session_factory
from crowdtune.store import repository as repo
from crowdtune.training import StageConfig, run_reward
from crowdtune.training.assess import win_rate
from test_lm_round import CROWD, WORDS, gold_items, reference, revisions, settings
from test_server_rounds import API, campaign, run_jobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny reward model, two steps on the gold rule: the reference over random words."""
    root = tmp_path_factory.mktemp("reward")
    rng = random.Random(0)
    data = root / "pairs.jsonl"
    rows = [
        {"prompt": f"Question {i}: what is it?", "chosen": reference(i),
         "rejected": " ".join(rng.choice(WORDS) for _ in range(6))}
        for i in range(16)
    ]  # fmt: skip
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = StageConfig(
        data=str(data), out=root / "model", max_steps=2, batch_size=8, eval_share=0.0,
        learning_rate=1e-3, progress=False,
    )  # fmt: skip
    run_reward(config)
    return root / "model"


@pytest.fixture(scope="module")
def judged(reward_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A 2-group sft round whose winner is chosen by the reward model's win rate on 12 gold
    prompts; candidates train hard enough (a high rate) that their greedy answers move off the
    base's, and (with this seed) one wins every prompt and the other none."""
    out = tmp_path_factory.mktemp("judged")
    reports: list[tuple[float, str]] = []
    result = run_model_round(
        revisions(CROWD, n_items=20), gold_items(12), base="tiny", out=out,
        settings=settings(reward_model=str(reward_model), select_by="reward", scheme="marginal",
                          max_new_tokens=6, learning_rate=5e-2, max_steps=4),
        progress=lambda fraction, message: reports.append((fraction, message)),
    )  # fmt: skip
    return result, reports


def test_every_candidate_carries_its_reward_win_rate(judged: tuple) -> None:
    result, reports = judged
    details = result.to_dict()
    json.dumps(details)
    base = details["base_evaluation"]
    assert base["metric"] == "nll" and base["reward_win_rate"] == 0.5
    assert base["reward_prompts"] == 12
    for candidate in details["candidates"]:
        evaluation = candidate["evaluation"]
        assert evaluation["metric"] == "nll"  # the gold evaluation stays
        rate = evaluation["reward_win_rate"]
        assert 0.0 <= rate <= 1.0
        assert evaluation["reward_win_rate_ci_low"] <= rate <= evaluation["reward_win_rate_ci_high"]
        lc = evaluation["length_controlled_win_rate"]  # refitted replicates: rounding apart
        assert 0.0 <= evaluation["length_controlled_win_rate_ci_low"] <= lc + 1e-9
        assert lc - 1e-9 <= evaluation["length_controlled_win_rate_ci_high"] <= 1.0
        assert evaluation["reward_prompts"] == 12 and 0 <= evaluation["answers_changed"] <= 12
        metrics = json.loads((Path(candidate["path"]) / "metrics.json").read_text())
        assert metrics["evaluation"] == evaluation
    assert details["settings"]["select_by"] == "reward"
    messages = [m for _, m in reports]
    assert any("the base answering gold prompts" in m for m in messages)
    # 12 prompts in batches of 4, per candidate
    assert sum("a candidate answering gold prompts" in m for m in messages) == 2 * 3
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_select_by_reward_picks_the_best_win_rate_and_pays_it(judged: tuple) -> None:
    result, _ = judged
    rates = {c.group: c.evaluation["reward_win_rate"] for c in result.candidates}
    assert len(set(rates.values())) == 2, f"the fixture's candidates should differ: {rates}"
    best = max(rates.values())
    assert result.winner == min(g for g, r in rates.items() if r == best)  # ties: lower group
    assert result.improved == (best > 0.5)
    for candidate in result.candidates:
        assert candidate.score == rates[candidate.group]
        assert candidate.gain == pytest.approx(rates[candidate.group] - 0.5)
    # marginal points: each member earns its group's gain, the win rate minus 0.5
    gains = {c.group: c.gain for c in result.candidates}
    assert result.points == pytest.approx(
        {c.contributor: gains[c.group] for c in result.contributors}
    )


def test_the_win_rate_is_assess_s_on_the_same_rewards() -> None:
    # Ties half, as `crowdtune assess` counts them; the round reuses these functions.
    rate, (low, high) = win_rate(np.array([1.0, 2.0, 0.0]), np.array([0.0, 2.0, 1.0]), 200, 0)
    assert rate == pytest.approx(0.5) and low <= rate <= high


def test_a_missing_reward_model_fails_before_anything_trains(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-reward"
    with pytest.raises(FileNotFoundError, match=f"reward_model {missing}: no such folder"):
        run_model_round(
            revisions(CROWD), gold_items(), base="tiny", out=tmp_path / "round",
            settings=settings(reward_model=str(missing)),
        )  # fmt: skip
    assert not (tmp_path / "round").exists()


def test_another_stages_model_is_not_a_reward_model(judged: tuple, tmp_path: Path) -> None:
    result, _ = judged
    sft_folder = result.candidates[0].path
    with pytest.raises(ValueError, match="a model of the sft stage, not a reward model"):
        run_model_round(
            revisions(CROWD), gold_items(), base="tiny", out=tmp_path,
            settings=settings(reward_model=sft_folder),
        )  # fmt: skip


def test_reward_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match='select_by="reward" needs a reward_model'):
        ModelRoundSettings(select_by="reward")
    with pytest.raises(ValueError, match="select_by"):
        ModelRoundSettings(select_by="judge", reward_model="x")
    with pytest.raises(ValueError, match="max_new_tokens must be an integer of at least 1"):
        ModelRoundSettings(max_new_tokens=0)
    with pytest.raises(ValueError, match="reward_model must be a folder"):
        ModelRoundSettings(reward_model="  ")
    assert get_args(RoundSelectBy) == SELECT_BY


def test_regression_points_replay_only_rounds_selected_alike(judged: tuple) -> None:
    result, _ = judged
    details = result.to_dict()
    names = [c.contributor for c in result.contributors]
    groups = np.array([c.group - 1 for c in result.contributors])
    earlier = {**details, "settings": {**details["settings"], "select_by": "gold"}}
    alone = regression_points(names, groups, result.candidates, [], "sft", "reward")
    assert regression_points(
        names, groups, result.candidates, [earlier], "sft", "reward"
    ) == pytest.approx(alone)
    assert regression_points(
        names, groups, result.candidates, [details], "sft", "reward"
    ) != pytest.approx(alone)


def test_the_api_passes_a_reward_model_to_dpo_rounds_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    missing = str(tmp_path / "no-such-reward")
    with TestClient(create_app(url)) as client:
        project, auth = campaign(url, client)
        rounds, root = f"{API}/projects/{project}/rounds", auth["root"]
        for wrong, why in (
            ({"reward_model": missing}, "reward_model and select_by are for sft and dpo"),
            ({"candidate": "dpo", "select_by": "reward"}, "select_by 'reward' needs a reward"),
        ):
            reply = client.post(rounds, json=wrong, headers=root)
            assert reply.status_code == 422 and why in reply.json()["detail"], reply.text
        for wrong in ({"candidate": "dpo", "reward_model": "x" * 501},
                      {"candidate": "dpo", "reward_model": "a\x00b"},
                      {"candidate": "dpo", "reward_model": " "},
                      {"candidate": "dpo", "select_by": "judge"}):  # fmt: skip
            assert client.post(rounds, json=wrong, headers=root).status_code == 422, wrong
        body = {"candidate": "dpo", "n_groups": 2, "seed": 0, "max_steps": 1,
                "reward_model": missing, "select_by": "reward", "max_new_tokens": 8}  # fmt: skip
        reply = client.post(rounds, json=body, headers=root)
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        engine = make_engine(url)
        try:
            with session_factory(engine)() as session:
                payload = repo.get_job(session, job_id).payload
        finally:
            engine.dispose()
        assert payload["reward_model"] == missing and payload["select_by"] == "reward"
        assert payload["max_new_tokens"] == 8 and "model" not in payload
        # The worker checks the folder on its own machine before it trains anything.
        assert run_jobs(url, tmp_path) == [job_id]
        job = client.get(f"{API}/jobs/{job_id}", headers=root).json()
        assert job["state"] == "failed"
        assert f"reward_model {missing}: no such folder" in job["message"], job
        assert not list((tmp_path / "models").rglob("metrics.json"))
