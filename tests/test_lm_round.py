"""Rounds of language-model candidates on the tiny model: groups train LoRA adapters on their
revisions (or votes), compete on gold items, pay points, and a later round starts from the
winner. A few steps per training keep every round to seconds."""

import hashlib
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from transformers import TrainerCallback

from crowdtune.crowd.feedback.lm_round import ModelRoundSettings, run_model_round
from crowdtune.crowd.feedback.round import accumulated_points
from crowdtune.records import FRAME_COLUMNS, REVISION_COLUMNS
from crowdtune.training import load_trained

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "apple river stone cloud green seven quick table music window orange paper".split()


def reference(i: int) -> str:
    return f"The answer to question {i} is {WORDS[i % len(WORDS)]}."


def revisions(behaviours: dict[str, str], n_items: int = 16, seed: int = 0) -> pd.DataFrame:
    """Every contributor revises every item: ``expert`` writes the reference, ``lazy`` keeps the
    original, ``adversarial`` writes random words. Items 0-3 are the gold items."""
    rng = random.Random(seed)
    rows = []
    for name, behaviour in behaviours.items():
        for i in range(n_items):
            original = "I do not know."
            revised = {
                "expert": reference(i),
                "lazy": original,
                "adversarial": " ".join(rng.choice(WORDS) for _ in range(8)),
            }[behaviour]
            prompt = f"Question {i}: what is it?"
            rows.append((f"{name}-{i}", prompt, original, revised, None, name, "test"))
    return pd.DataFrame(rows, columns=list(REVISION_COLUMNS))


def gold_items(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": [f"Question {i}: what is it?" for i in range(n)],
            "original": ["I do not know."] * n,
            "reference": [reference(i) for i in range(n)],
        }
    )


CROWD = {"ann": "expert", "bob": "expert", "cat": "lazy", "dan": "adversarial"}


def settings(**overrides: object) -> ModelRoundSettings:
    values: dict = {"n_groups": 2, "max_steps": 2, "seed": 0, "batch_size": 4,
                    "max_length": 64, "n_bootstrap": 200}  # fmt: skip
    values.update(overrides)
    return ModelRoundSettings(**values)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("round-1")
    reports: list[tuple[float, str]] = []
    result = run_model_round(
        revisions(CROWD),
        gold_items(),
        base="tiny",
        out=out,
        settings=settings(),
        progress=lambda fraction, message: reports.append((fraction, message)),
    )
    return result, out, reports


def test_a_round_trains_ranks_and_records_its_candidates(first: tuple) -> None:
    result, out, reports = first
    details = result.to_dict()
    json.dumps(details)  # JSON-ready
    assert details["n_gold"] == 4 and details["n_gold_rows_excluded"] == 4 * 4
    assert details["n_training_rows"] == 4 * 12 and details["n_feedback_rows"] == 4 * 16
    assert (
        details["base_evaluation"]["metric"] == "nll" and details["base_evaluation"]["n_items"] == 4
    )
    candidates = details["candidates"]
    assert [c["group"] for c in candidates] == [1, 2]
    assert sorted(m for c in candidates for m in c["members"]) == sorted(CROWD)
    by_rank = sorted(candidates, key=lambda c: c["rank"])
    assert by_rank[0]["evaluation"]["value"] <= by_rank[1]["evaluation"]["value"]  # lower NLL first
    assert details["winner"] == by_rank[0]["group"]
    winner = by_rank[0]
    assert details["improved"] == (
        winner["evaluation"]["value"] < details["base_evaluation"]["value"]
    )
    assert details["model_after"] == (winner["path"] if details["improved"] else "tiny")
    for candidate in candidates:
        evaluation = candidate["evaluation"]
        assert evaluation["ci_low"] <= evaluation["diff"] <= evaluation["ci_high"]
        assert candidate["score"] == pytest.approx(-evaluation["value"])
        folder = Path(candidate["path"])
        assert folder == out / f"group-{candidate['group']}"
        metrics = json.loads((folder / "metrics.json").read_text())
        provenance = metrics["provenance"]
        assert provenance["round"] == 1 and provenance["parent"] == "tiny"
        assert (
            provenance["members"] == candidate["members"]
            and provenance["group"] == candidate["group"]
        )
        digest = hashlib.sha256((folder / "train.jsonl").read_bytes()).hexdigest()
        assert provenance["data_hash"] == digest
        assert provenance["settings"]["seed"] == 0 and metrics["evaluation"] == evaluation
        assert metrics["checkpoint"] == "lora-adapter" and metrics["steps"] == 2
        assert "callbacks" not in metrics["config"]
        # The tiny tokenizer has a chat template: rows are conversations, as TRL reads them.
        row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
        assert row["prompt"][0]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    # Rank points: the winner's group G, the other G - 1, when the round improved.
    points = {c["contributor"]: c["points"] for c in details["contributors"]}
    expected = {m: (2 - c["rank"]) * details["improved"] for c in candidates for m in c["members"]}
    assert points == pytest.approx(expected)
    assert accumulated_points([details]) == pytest.approx(points)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("step" in message for _, message in reports) >= 4  # 2 trainings x 2 steps


def test_a_second_round_starts_from_an_adapter_of_the_first(first: tuple, tmp_path: Path) -> None:
    result, _, _ = first
    parent = result.candidates[0].path  # an adapter, whether or not it won
    second = run_model_round(
        revisions(CROWD, seed=1),
        gold_items(),
        base=parent,
        out=tmp_path,
        settings=settings(seed=1, strategy="epsilon-greedy"),
        round_index=1,
        points=result.points,
    )
    assert second.round_number == 2 and second.base == parent
    assert second.model_after in (parent, *(c.path for c in second.candidates))
    # The base evaluation of round 2 is round 1's evaluation of that candidate.
    assert second.base_evaluation["value"] == pytest.approx(
        result.candidates[0].evaluation["value"]
    )
    folder = Path(second.candidates[0].path)
    assert json.loads((folder / "metrics.json").read_text())["provenance"]["parent"] == parent
    model, _ = load_trained(folder)  # the chain tiny -> round 1 -> round 2 merges
    assert model.config.n_layer == 2


def test_marginal_points_pay_each_group_its_gain_in_nats(tmp_path: Path) -> None:
    outcome = run_model_round(
        revisions(CROWD), gold_items(), base="tiny", out=tmp_path,
        settings=settings(scheme="marginal", seed=2),
    )  # fmt: skip
    gains = {c.group: c.gain for c in outcome.candidates}
    assert gains == pytest.approx({c.group: -c.evaluation["diff"] for c in outcome.candidates})
    assert outcome.points == pytest.approx(
        {c.contributor: gains[c.group] for c in outcome.contributors}
    )


def test_regression_points_replay_the_history(tmp_path: Path) -> None:
    def run(history: list, name: str):  # noqa: ANN202
        return run_model_round(
            revisions(CROWD), gold_items(), base="tiny", out=tmp_path / name,
            settings=settings(scheme="regression", seed=2), history=history,
        )  # fmt: skip

    alone = run([], "alone")
    # One round: a member's estimate follows its group's gain (centred, shrunk by the ridge).
    better, worse = sorted(alone.candidates, key=lambda c: -float(c.gain))
    assert alone.points[better.members[0]] > alone.points[worse.members[0]]
    assert sum(alone.points.values()) == pytest.approx(0.0, abs=1e-9)
    assert alone.extra_fits == 0
    # An earlier round where ann alone beat the others: this round's award is the change of
    # the estimates after it, so it differs; a round of another kind is not replayed.
    earlier = {
        "candidate": "sft",
        "contributors": [{"contributor": n, "group": 1 if n == "ann" else 2} for n in CROWD],
        "candidates": [{"group": 1, "gain": 1.0}, {"group": 2, "gain": 0.0}],
    }
    assert run([earlier], "replayed").points != pytest.approx(alone.points)
    assert run([{**earlier, "candidate": "dpo"}], "other").points == pytest.approx(alone.points)


def test_leave_one_out_retrains_within_its_budget(tmp_path: Path) -> None:
    outcome = run_model_round(
        revisions(CROWD), gold_items(), base="tiny", out=tmp_path,
        settings=settings(scheme="leave-one-out", loo_budget=3),
    )  # fmt: skip
    details = outcome.to_dict()
    assert details["extra_fits"] == 3
    unpaid = [c for c in details["contributors"] if c["points"] is None]
    assert len(unpaid) == 1 and "budget" in unpaid[0]["reason"]
    assert len(list((tmp_path / "extra").glob("*/metrics.json"))) == 3
    winner = next(c for c in outcome.candidates if c.rank == 0)
    first_member = winner.members[0]
    extra = (
        tmp_path / "extra" / f"group-{winner.group}-without-{sorted(CROWD).index(first_member) + 1}"
    )
    metrics = json.loads((extra / "metrics.json").read_text())
    assert metrics["provenance"]["left_out"] == first_member
    paid = outcome.points[first_member]
    assert paid == pytest.approx(winner.score + metrics["evaluation"]["value"])
    assert unpaid[0]["contributor"] not in accumulated_points([details])  # unscored, not 0


def test_the_experts_candidate_fits_the_references_better(tmp_path: Path) -> None:
    crowd = {"ann": "expert", "dan": "adversarial"}
    outcome = run_model_round(
        revisions(crowd, n_items=40), gold_items(), base="tiny", out=tmp_path,
        settings=settings(max_steps=30, learning_rate=3e-3, batch_size=8),
    )  # fmt: skip
    nll = {c.members[0]: c.evaluation["value"] for c in outcome.candidates}
    assert nll["ann"] < nll["dan"] < outcome.base_evaluation["value"] + 1.0
    assert outcome.improved and outcome.winner == next(
        c.group for c in outcome.candidates if c.members == ["ann"]
    )


def dpo_votes(oracles: dict[str, bool]) -> pd.DataFrame:
    """Everyone votes on items 0-15; response A is always the reference; an oracle votes A (0),
    a contrarian B (1)."""
    rows = [
        (f"{name}-{i}", f"Question {i}: what is it?", reference(i), "I do not know.",
         0 if oracle else 1, name, None, None, "test")
        for name, oracle in oracles.items()
        for i in range(16)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def dpo_gold() -> pd.DataFrame:
    gold = pd.DataFrame(
        {
            "prompt": [f"Question {i}: what is it?" for i in range(4)],
            "response_a": [reference(i) for i in range(4)],
            "response_b": ["I do not know."] * 4,
            "verdict": ["a", "a", "b", "tie"],
        }
    )
    gold.loc[2, ["response_a", "response_b"]] = ["I do not know.", reference(2)]
    return gold


def test_a_dpo_round_scores_implicit_rewards_on_gold_votes(tmp_path: Path) -> None:
    feedback = dpo_votes({"ann": True, "bob": True, "cat": False, "dan": False})
    gold = dpo_gold()
    outcome = run_model_round(
        feedback, gold, base="tiny", out=tmp_path,
        settings=settings(candidate="dpo", max_steps=3, learning_rate=1e-3),
    )  # fmt: skip
    details = outcome.to_dict()
    assert details["base_evaluation"] == {**details["base_evaluation"], "metric": "accuracy",
                                          "value": 0.5, "n_items": 3}  # fmt: skip
    assert details["n_gold_rows_excluded"] == 4 * 4
    for candidate in outcome.candidates:
        assert candidate.evaluation["metric"] == "accuracy" and candidate.evaluation["n_items"] == 3
        assert candidate.score == candidate.evaluation["value"]
        row = json.loads((Path(candidate.path) / "train.jsonl").read_text().splitlines()[0])
        assert set(row) == {"prompt", "chosen", "rejected"}


def test_a_dpo_round_weighted_by_reliability_drops_the_contrarians_votes(tmp_path: Path) -> None:
    feedback = dpo_votes({"ann": True, "bob": True, "cat": True, "dan": False})
    outcome = run_model_round(
        feedback, dpo_gold(), base="tiny", out=tmp_path,
        settings=settings(candidate="dpo", max_steps=1, vote_weights="dawid-skene"),
    )  # fmt: skip
    weights = outcome.annotator_weights
    assert weights is not None and weights["dan"] == 0.0 and min(weights.values()) == 0.0
    assert all(weights[name] > 0.8 for name in ("ann", "bob", "cat"))
    rows = {c.contributor: c.rows for c in outcome.contributors}
    assert rows == {"ann": 12, "bob": 12, "cat": 12, "dan": 0}
    for candidate in outcome.candidates:  # every training pair prefers the reference
        lines = (Path(candidate.path) / "train.jsonl").read_text().splitlines()
        assert len(lines) == 12 * sum(m != "dan" for m in candidate.members)
        assert all("The answer" in str(json.loads(line)["chosen"]) for line in lines)
    assert outcome.to_dict()["settings"]["vote_weights"] == "dawid-skene"
    with pytest.raises(ValueError, match="it is for dpo rounds"):
        ModelRoundSettings(candidate="sft", vote_weights="dawid-skene")


def test_cancelling_in_a_training_step_stops_the_round(tmp_path: Path) -> None:
    class Cancel(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        run_model_round(
            revisions(CROWD), gold_items(), base="tiny", out=tmp_path,
            settings=settings(), callbacks=[Cancel()],
        )  # fmt: skip
    assert not (tmp_path / "group-1" / "metrics.json").exists()


def test_bad_settings_and_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown point scheme 'shapley'"):
        ModelRoundSettings(scheme="shapley")
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        ModelRoundSettings(max_steps=0)
    with pytest.raises(ValueError, match="lacks the column"):
        run_model_round(
            revisions(CROWD).drop(columns="revised"), gold_items(), base="tiny",
            out=Path("/nonexistent"), settings=settings(),
        )  # fmt: skip
    with pytest.raises(ValueError, match="n_groups is 5 but only 4"):
        run_model_round(
            revisions(CROWD), gold_items(), base="tiny", out=Path("/nonexistent"),
            settings=settings(n_groups=5),
        )  # fmt: skip


def test_dpo_gold_takes_a_comparison_frames_label() -> None:
    from crowdtune.crowd.feedback.lm_evaluation import GoldEvaluation, prepare_round_data

    feedback = pd.DataFrame(
        [("v", "q9", "x", "y", 0, "ann", None, None, "t")], columns=list(FRAME_COLUMNS)
    )
    gold = pd.DataFrame({"prompt": ["q1", "q2", "q3"], "response_a": ["a1", "a2", "a3"],
                         "response_b": ["b1", "b2", "b3"], "label": [0, 1, 2]})  # fmt: skip
    data = prepare_round_data("dpo", feedback, gold)
    evaluation = GoldEvaluation(data, None, chat=False, batch_size=2, max_length=64,
                                n_bootstrap=200, seed=0)  # fmt: skip
    assert evaluation.targets == [("a1", "b1"), ("b2", "a2")]  # the tie is skipped
    with pytest.raises(ValueError, match="lack a verdict"):
        prepare_round_data("dpo", feedback, gold.drop(columns="label"))
