"""Assessment: win rates with intervals, the length-controlled win rate, generation, the CLI.

The statistics are checked on rewards built with a known answer; the pipeline on the tiny
model (a reward model and an SFT model trained for a few steps on a toy set). torch runs on one
thread (see test_training_stages.py for why).
"""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.training import StageConfig, StageDataError, load_model, run_reward, run_sft
from crowdtune.training.assess import (
    answer_rewards,
    assess,
    held_out_prompts,
    length_controlled_win_rate,
    win_indicators,
    win_rate,
)
from crowdtune.training.generation import generate, reward_scores
from crowdtune.training.stages import prompt_key, stage_split

WORDS = "apple river stone cloud green seven quick table music window orange paper".split()


# One torch thread (tests/conftest.py): two per pytest worker oversubscribe the 2 cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# statistics


def test_win_rate_counts_ties_half() -> None:
    rate, (low, high) = win_rate([3, 2, 1, 1], [0, 0, 5, 1])
    assert rate == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert list(win_indicators([3, 1, 1], [0, 5, 1])) == [1.0, 0.0, 0.5]
    assert 0 <= low <= rate <= high <= 1


def test_identical_answers_tie_exactly_even_when_scoring_is_batch_dependent() -> None:
    # A scorer whose scores move with the batch, as padding moves a real model's last digits.
    def score(prompts: list[str], answers: list[str]) -> list[float]:
        return [len(a) + 1e-6 * len(answers) for a in answers]

    answers = {"base": ["aa", "bbb", "c", "dd"], "tuned": ["aa", "b", "c", "dddd"]}
    rewards = answer_rewards(score, ["p1", "p2", "p3", "p4"], answers)
    wins = win_indicators(rewards["tuned"], rewards["base"])
    # The unchanged answers (1st, 3rd) tie; the changed ones are scored and compared.
    assert wins.tolist() == [0.5, 0.0, 0.5, 1.0]
    assert rewards["tuned"][3] == pytest.approx(4.0, abs=1e-5)
    unchanged = {"base": ["x", "y"], "tuned": ["x", "y"]}
    assert answer_rewards(score, ["p", "q"], unchanged)["tuned"].tolist() == [1 + 2e-6] * 2


def test_win_rate_interval_covers_the_truth() -> None:
    # Tuned beats base with probability 0.7: the 95% interval should cover 0.7 about 95% of the
    # time; over 40 seeded samples of 300 prompts, at least 34 (a binomial(40, 0.95) lower tail).
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        tuned = (rng.random(300) < 0.7).astype(float)
        rate, (low, high) = win_rate(tuned, np.full(300, 0.5), n_bootstrap=500, seed=seed)
        covered += low <= 0.7 <= high
        assert low < rate < high
    assert covered >= 34


def test_length_controlled_win_rate_removes_a_pure_length_effect() -> None:
    # The reward is the length plus noise: the tuned model only talks more.
    rng = np.random.default_rng(0)
    base_length = rng.normal(300, 60, 400)
    tuned_length = base_length + rng.normal(40, 60, 400)
    base_reward = base_length + rng.normal(0, 40, 400)
    tuned_reward = tuned_length + rng.normal(0, 40, 400)
    raw, _ = win_rate(tuned_reward, base_reward)
    controlled = length_controlled_win_rate(
        win_indicators(tuned_reward, base_reward), tuned_length - base_length
    )
    assert raw > 0.65
    assert abs(controlled["lc_win_rate"] - 0.5) < 0.1
    low, high = controlled["ci"]
    assert low < 0.5 < high
    assert controlled["length_coefficient"] > 1
    # A real gain on top of the length effect survives the control.
    better = length_controlled_win_rate(
        win_indicators(tuned_reward + 60, base_reward), tuned_length - base_length
    )
    assert better["lc_win_rate"] > 0.75 and better["ci"][0] > 0.6


def test_length_controlled_win_rate_without_length_differences_is_the_win_rate() -> None:
    # No length term, and at 60 prompts the cross-validated penalty barely shrinks the intercept.
    wins = np.tile([1.0, 1.0, 0.0, 0.5, 1.0, 0.0], 10)
    controlled = length_controlled_win_rate(wins, np.zeros(60), n_bootstrap=200)
    assert controlled["lc_win_rate"] == pytest.approx(wins.mean(), abs=1e-3)
    assert controlled["length_coefficient"] == 0
    with pytest.raises(ValueError, match="1-d arrays"):
        length_controlled_win_rate(wins, np.zeros(4))


def test_length_controlled_win_rate_of_a_clean_sweep_is_near_one() -> None:
    # liblinear alone would drop the loss rows (all of weight zero) and answer 1/2.
    controlled = length_controlled_win_rate(np.ones(20), np.arange(20.0), n_bootstrap=50)
    assert controlled["lc_win_rate"] > 0.9
    assert controlled["ci"][0] > 0.9


#: (prompts, mean length difference, true log-odds of winning at equal length, share of ties)
#: and AlpacaEval's own length-controlled win rate on the case, ``get_length_controlled_winrate``
#: (alpaca_eval 0.6.6, ``glm_name="length_controlled_minimal"``, scikit-learn 1.9.1) divided by
#: 100, as ``python -m benchmarks.alpaca_eval_reference`` prints it (its docstring: how to set up).
#: Where its cross-validated L1 penalty zeroes the model term, the rate is exactly 1/2.
LC_CASES = [
    (40, 30, 1.0, 0.2, 0.5496048359064581),
    (64, 0, 0.8, 0.5, 0.5695300365217296),
    (100, 60, -1.0, 0.0, 0.36182348559659183),
    (150, 60, -0.5, 0.0, 0.4076222938613446),
    (12, 10, 2.0, 0.3, 0.5),
    (200, -40, 0.3, 0.1, 0.6128049405167691),
    (10, 0, 0.0, 0.4, 0.3601904149955878),
    (30, 20, 0.2, 0.6, 0.5),
]


def lc_case(n: int, shift: float, gain: float, tie: float, seed: int) -> tuple[list, list]:
    """Wins and length differences where longer answers win more (the log-odds of a win are
    ``gain + 1.5 * tanh(d / sd(d))``) and a share ``tie`` of the prompts are ties."""
    rng = np.random.default_rng(seed)
    difference = rng.normal(shift, 60, n).round()
    p = 1 / (1 + np.exp(-(gain + 1.5 * np.tanh(difference / difference.std()))))
    ties = rng.random(n) < tie
    wins = np.where(ties, 0.5, (rng.random(n) < p).astype(float))
    return wins.tolist(), difference.tolist()


@pytest.mark.parametrize(("seed", "case"), list(enumerate(LC_CASES)))
def test_length_controlled_win_rate_is_alpaca_evals(
    seed: int, case: tuple[int, float, float, float, float]
) -> None:
    wins, difference = lc_case(*case[:4], seed=seed)
    controlled = length_controlled_win_rate(wins, difference, n_bootstrap=0)
    assert controlled["lc_win_rate"] == pytest.approx(case[4], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# generation and scoring on the tiny model


def test_generate_batches_like_one_by_one_and_returns_only_new_text() -> None:
    model, tokenizer = load_model("tiny", seed=3)
    prompts = ["Tell me a story.", "Why?", [{"role": "user", "content": "Name a colour."}]]
    one_by_one = [generate(model, tokenizer, [p], 12, batch_size=1)[0] for p in prompts[:2]]
    batched = generate(model, tokenizer, prompts[:2], 12, batch_size=2)
    assert list(batched) == one_by_one  # left padding leaves each row's continuation unchanged
    assert all(0 < n <= 12 for n in batched.new_tokens)
    conversation = generate(model, tokenizer, prompts[2:], 12)
    assert "Name a colour" not in conversation[0]
    sampled = [generate(model, tokenizer, prompts[:1], 12, do_sample=True, seed=7) for _ in "ab"]
    assert sampled[0] == sampled[1]  # the seed decides


def test_reward_scores_one_per_pair() -> None:
    model, tokenizer = load_model("tiny", "sequence-classification", num_labels=1)
    scores = reward_scores(model, tokenizer, ["Q1", "Q2", "Q3"], ["a", "bb bb", "c"], batch_size=2)
    assert len(scores) == 3 and all(np.isfinite(scores))
    alone = reward_scores(model, tokenizer, ["Q2"], ["bb bb"])
    assert alone[0] == pytest.approx(scores[1], abs=1e-5)  # padding does not change a score


# ---------------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A toy set, a tiny reward model and a tiny SFT model trained on it for a few steps."""
    root = tmp_path_factory.mktemp("assess")
    rng = random.Random(0)
    data = root / "toy-trl.jsonl"
    with data.open("w") as out:
        for i in range(40):
            row = {
                "prompt": f"Question {i}: tell me about the {rng.choice(WORDS)}.",
                "chosen": "Thank you, here is a good answer.",
                "rejected": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))),
            }
            out.write(json.dumps(row) + "\n")
    common = {"data": str(data), "max_steps": 4, "batch_size": 4, "progress": False}
    run_reward(StageConfig(out=root / "reward", eval_share=0.25, learning_rate=1e-3, **common))
    run_sft(StageConfig(out=root / "sft", eval_share=0.5, learning_rate=1e-3, **common))
    return {"data": data, "reward": root / "reward", "sft": root / "sft"}


def test_assess_uses_only_held_out_prompts(trained: dict[str, Path]) -> None:
    result = assess(
        "tiny", str(trained["sft"]), str(trained["data"]), trained["reward"],
        n_prompts=None, max_new_tokens=8, batch_size=8,
    )  # fmt: skip
    # The reward model trained on 30 of the 40 prompts (eval share 0.25), the SFT model on 20
    # (0.5), both with seed 0 over the same rows: the SFT training prompts are among them.
    sft_train, _, _ = stage_split("sft", StageConfig(data=str(trained["data"]), eval_share=0.5))
    reward_train, _, _ = stage_split(
        "reward", StageConfig(data=str(trained["data"]), eval_share=0.25)
    )
    seen = {prompt_key(r["prompt"]) for r in sft_train + reward_train}
    assert result.prompts["available"] == 40
    assert result.prompts["excluded_trained"] == len(seen) == 30
    assert result.n == 10 and not {prompt_key(r["prompt"]) for r in result.rows} & seen
    wins = [r["win"] for r in result.rows]
    assert result.win_rate == pytest.approx(np.mean(wins))
    assert result.wins + result.ties + result.losses == 10
    changed = sum(r["base"] != r["tuned"] for r in result.rows)
    assert result.changed == changed and result.ties >= result.n - changed
    low, high = result.win_rate_ci
    assert low <= result.win_rate <= high
    assert all(r["base_new_tokens"] <= 8 and r["tuned_new_tokens"] <= 8 for r in result.rows)
    assert result.mean_reward["base"] == pytest.approx(
        np.mean([r["base_reward"] for r in result.rows])
    )


def test_assess_cli_json_and_rows(trained: dict[str, Path], tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "assess", "--base", "tiny", "--tuned", str(trained["sft"]),
            "--prompts", str(trained["data"]), "--reward-model", str(trained["reward"]),
            "--n-prompts", "6", "--max-new-tokens", "6", "--json", "--out", str(rows),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert {
        "n", "win_rate", "win_rate_ci", "lc_win_rate", "lc_win_rate_ci", "length_coefficient",
        "wins", "ties", "losses", "mean_length", "mean_new_tokens", "mean_reward", "prompts",
        "changed", "settings", "seconds",
    } <= set(body)  # fmt: skip
    assert body["n"] == 6 and len(body["win_rate_ci"]) == 2
    assert set(body["mean_reward"]) == {"base", "tuned"}
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    assert len(lines) == 6 and {"prompt", "base", "tuned", "base_reward", "win"} <= set(lines[0])
    table = CliRunner().invoke(
        app,
        [
            "assess", "--base", "tiny", "--tuned", "tiny", "--prompts", str(trained["data"]),
            "--reward-model", str(trained["reward"]), "--n-prompts", "3", "--max-new-tokens", "4",
        ],
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "length-controlled win rate" in table.stdout
    # The same model on both sides ties everywhere.
    assert "0 / 3 / 0" in table.stdout and "0 of 3" in table.stdout


def test_assess_errors(trained: dict[str, Path], tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["assess", *args])
        return result.exit_code, " ".join(result.output.split())

    base = ["--base", "tiny", "--tuned", "tiny", "--prompts", str(trained["data"])]
    code, output = run(*base, "--reward-model", str(tmp_path / "nowhere"))
    assert code == 2 and "no such folder" in output and "train reward" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run(*base, "--reward-model", str(empty))
    assert code == 2 and "no model in it" in output
    code, output = run(
        "--base", "no-such-model-xyz", "--tuned", "tiny", "--prompts", str(trained["data"]),
        "--reward-model", str(trained["reward"]),
    )  # fmt: skip
    assert code == 2 and "unknown model 'no-such-model-xyz'" in output
    # Every prompt of a source the models trained on in full is refused, not reused.
    with pytest.raises(StageDataError, match="used in training"):
        held_out_prompts("@car:test", 5, trained=[_trained_on_all(tmp_path)])


def _trained_on_all(tmp_path: Path) -> Path:
    """A stage folder whose metrics.json says it trained on every row of @car:test."""
    folder = tmp_path / "stage"
    folder.mkdir()
    config = {"model": "tiny", "data": "@car:test", "eval_share": 0.0, "seed": 0}
    metrics = {"stage": "sft", "config": config}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder
