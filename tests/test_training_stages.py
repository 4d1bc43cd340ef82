"""The TRL training stages (SFT, reward, DPO, RL) on the tiny model and a learnable toy set.

The toy set: every prompt's chosen answer is the same sentence, the rejected one random words,
so each stage has something it can learn in a few dozen steps. torch runs on one thread here:
on a shared 2-core machine, OpenMP threads that wait for a busy core made these runs up to 30
times slower (DPO: 58 s against 1.9 s for 20 steps).
"""

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.records import Comparison, Verdict
from crowdtune.training import (
    StageConfig,
    StageDataError,
    UnknownModelError,
    load_trained,
    run_dpo,
    run_reward,
    run_rl,
    run_sft,
    stage_rows,
)
from crowdtune.training.stages import StageMemoryError, _train

CHOSEN = "Thank you, here is a good answer."
WORDS = "apple river stone cloud green seven quick table music window orange paper".split()


# One torch thread (tests/conftest.py): two per pytest worker oversubscribe the 2 cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 TRL preference rows: chosen always :data:`CHOSEN`, rejected random words."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("toy") / "toy-trl.jsonl"
    with path.open("w") as out:
        for i in range(48):
            rejected = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
            row = {
                "prompt": f"Question {i}: tell me about the {rng.choice(WORDS)}.",
                "chosen": CHOSEN,
                "rejected": rejected,
            }
            out.write(json.dumps(row) + "\n")
    return path


def config(data: Path, out: Path, **overrides: object) -> StageConfig:
    settings: dict = {
        "model": "tiny",
        "data": str(data),
        "out": out,
        "max_steps": 20,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "max_length": 128,
        "progress": False,
    }
    settings.update(overrides)
    return StageConfig(**settings)


def assert_learned(metrics: dict, factor: float) -> None:
    losses = [entry["loss"] for entry in metrics["loss_by_step"]]
    assert len(losses) == metrics["steps"] == 20  # logging_steps=1
    assert losses[-1] < factor * losses[0], losses


@pytest.fixture(scope="module")
def reward_dir(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reward")
    result = run_reward(config(toy, out))
    assert result.out == out
    return out


def test_sft_learns_the_chosen_answer_and_reloads(toy: Path, tmp_path: Path) -> None:
    result = run_sft(config(toy, tmp_path))
    assert_learned(result.metrics, 0.85)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rows"] == {**saved["rows"], "read": 48, "train": 43, "eval": 5}
    assert saved["eval_loss"] < saved["first_loss"]
    assert saved["checkpoint"] == "full" and (tmp_path / "model.safetensors").is_file()
    model, tokenizer = load_trained(tmp_path)
    # String rows train on prompt + completion as plain text (no chat template).
    prompt = tokenizer("Question 99: tell me about the cloud.", return_tensors="pt")
    answer = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    assert tokenizer.decode(answer[0, prompt["input_ids"].shape[1] :]).startswith(CHOSEN[:9])


def test_reward_model_learns_and_scores_held_out_pairs(reward_dir: Path) -> None:
    metrics = json.loads((reward_dir / "metrics.json").read_text())
    assert_learned(metrics, 0.2)
    assert metrics["reward_accuracy"] == 1.0 and metrics["reward_accuracy_pairs"] == 5
    import torch

    model, tokenizer = load_trained(reward_dir, "sequence-classification", num_labels=1)
    texts = [f"Question 7: tell me about the river.{answer}" for answer in (CHOSEN, "stone table")]
    with torch.no_grad():
        scores = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits[:, 0]
    assert scores[0] > scores[1]


def test_reward_model_with_lora_writes_an_adapter_that_merges(toy: Path, tmp_path: Path) -> None:
    result = run_reward(config(toy, tmp_path, lora=True, learning_rate=3e-3))
    assert_learned(result.metrics, 0.2)
    assert (tmp_path / "adapter_config.json").is_file()
    assert not (tmp_path / "model.safetensors").is_file()
    assert result.metrics["checkpoint"] == "lora-adapter"
    model, _ = load_trained(tmp_path, "sequence-classification", num_labels=1)
    assert not hasattr(model, "peft_config")  # merged into a plain model


def test_dpo_prefers_the_chosen_answer(toy: Path, tmp_path: Path) -> None:
    result = run_dpo(config(toy, tmp_path))
    assert_learned(result.metrics, 0.2)
    assert result.metrics["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2 at the start
    assert result.metrics["eval_reward_accuracy"] == 1.0
    model, _ = load_trained(tmp_path)
    assert model.config.model_type == "gpt2"


def test_rl_raises_the_reward_of_the_reward_model(
    toy: Path, reward_dir: Path, tmp_path: Path
) -> None:
    result = run_rl(
        config(
            toy,
            tmp_path,
            reward_model=reward_dir,
            max_steps=40,
            learning_rate=1e-2,
            max_completion_length=8,
        )
    )
    rewards = [entry["reward"] for entry in result.metrics["reward_by_step"]]
    assert len(rewards) == 40
    assert sum(rewards[-10:]) > sum(rewards[:10]), rewards
    assert result.metrics["eval_reward"] is not None
    assert (tmp_path / "model.safetensors").is_file()


def test_ties_are_dropped_and_counted(tmp_path: Path) -> None:
    from crowdtune.datasets.comparisons import write_jsonl, write_trl_jsonl

    votes = [
        Comparison(str(i), ("Hi?",), (f"a{i}",), (f"b{i}",), verdict)
        for i, verdict in enumerate([Verdict.A, Verdict.B, Verdict.TIE, Verdict.TIE])
    ]
    write_jsonl(votes, tmp_path / "votes.jsonl")
    data = stage_rows(str(tmp_path / "votes.jsonl"), "dpo")
    assert data.counts == {"read": 4, "ties_dropped": 2, "duplicates_dropped": 0, "rows": 2}
    assert data.rows[1] == {"prompt": "Hi?", "chosen": "b1", "rejected": "a1"}
    # The feedback server's TRL export with --ties keep marks ties with a `tie` field.
    write_trl_jsonl(votes, tmp_path / "votes-trl.jsonl", ties="keep")
    assert stage_rows(str(tmp_path / "votes-trl.jsonl"), "reward").counts["ties_dropped"] == 2
    sft = stage_rows(str(tmp_path / "votes.jsonl"), "sft").rows
    assert sft[0] == {"prompt": "Hi?", "completion": "a0"}
    assert stage_rows(str(tmp_path / "votes.jsonl"), "rl").rows == [{"prompt": "Hi?"}]


def test_data_without_the_stage_columns_names_the_expected_ones(tmp_path: Path) -> None:
    path = tmp_path / "sft-only.jsonl"
    path.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello!"}) + "\n")
    with pytest.raises(StageDataError, match=r"missing column\(s\) rejected.*`prompt`, `chosen`"):
        stage_rows(str(path), "dpo")
    assert stage_rows(str(path), "sft").rows == [{"prompt": "Hi?", "completion": "Hello!"}]
    result = CliRunner().invoke(
        app, ["train", "dpo", "--data", str(path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "`prompt`, `chosen`, `rejected`" in result.output


def test_unknown_model_lists_the_built_in_names(toy: Path, tmp_path: Path) -> None:
    # A name that is not a valid hub id fails before any network access.
    with pytest.raises(UnknownModelError, match="Built-in models: 'tiny'.*'smollm2'"):
        run_sft(config(toy, tmp_path, model="no such model"))
    result = CliRunner().invoke(
        app, ["train", "sft", "--model", "no such model", "--data", str(toy), "--out", "x"]
    )
    assert result.exit_code == 2
    assert "'smollm2'" in result.output and "hub" in result.output


def test_running_out_of_memory_suggests_lora_and_a_smaller_batch(tmp_path: Path) -> None:
    import torch

    class Exhausted:
        def train(self) -> None:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(StageMemoryError, match=r"--lora.*--batch-size"):
        _train(Exhausted(), config(Path("x.jsonl"), tmp_path))


def test_cli_trains_and_prints_metrics_as_json(toy: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "reward", "--data", str(toy), "--out", str(tmp_path), "--max-steps", "3",
         "--learning-rate", "1e-3", "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["stage"] == "reward" and metrics["steps"] == 3
    assert (tmp_path / "metrics.json").is_file()
    help_text = CliRunner().invoke(app, ["train", "rl", "--help"]).output
    assert "--reward-model" in help_text


@pytest.mark.slow
def test_smollm2_reward_model_with_lora_trains_offline(tmp_path: Path) -> None:
    result = run_reward(
        StageConfig(
            model="smollm2",
            data="@car:test",
            out=tmp_path,
            lora=True,
            max_steps=4,
            batch_size=2,
            max_rows=16,
            eval_share=0.25,
            max_length=192,
            progress=False,
        )
    )
    metrics = result.metrics
    assert metrics["steps"] == 4 and len(metrics["loss_by_step"]) == 4
    assert 0 < metrics["reward_accuracy_pairs"] == metrics["rows"]["eval_used"] <= 6
    assert (tmp_path / "adapter_config.json").is_file()


def test_smollm2_is_converted_into_the_cache_never_the_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crowdtune.training import models

    converted: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:  # stands in for the 15-30 s dequantization
        assert gguf.name.endswith(".gguf") and gguf.is_file()
        converted.append(out)
        (out / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(models, "_convert_gguf", convert)
    monkeypatch.setenv("CROWDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path / "home"))
    first = models.smollm2_checkpoint()
    assert first == tmp_path / "cache" / "models" / models.SMOLLM2_DIRNAME
    assert models.smollm2_checkpoint() == first and len(converted) == 1  # converted once
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [models.SMOLLM2_DIRNAME]
    assert not (tmp_path / "home").exists()
