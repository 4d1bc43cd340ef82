"""The exports of revision and rating campaigns train with TRL: each file, loaded with
``datasets.load_dataset("json", ...)``, goes through one step of the matching trainer on the tiny
model (SFT for revisions, DPO and reward for revision pairs, KTO for ratings)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from crowdtune.datasets.ratings import write_rating_kto_jsonl
from crowdtune.datasets.revisions import write_revision_sft_jsonl, write_revision_trl_jsonl
from crowdtune.records import Rating, Revision
from crowdtune.training.models import load_model

# One torch thread (tests/conftest.py), as for the other TRL tests: two per pytest worker
# oversubscribe the 2 cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "apple river stone cloud green seven quick table music window orange paper".split()


def revisions() -> list[Revision]:
    """Eight revisions, each changing its answer (so each also gives a preference pair)."""
    return [
        Revision(
            f"item-{i}/ann",
            (f"Question {i}: tell me about the {WORDS[i]}.",),
            f"{WORDS[i]} {WORDS[i + 1]}",
            f"The {WORDS[i]} is a fine thing, thank you for asking.",
            "ann",
        )
        for i in range(8)
    ]


def ratings() -> list[Rating]:
    """Eight ratings on 1 to 7, half above the middle (desirable), half not."""
    return [
        Rating(
            f"item-{i}/ann",
            (f"Question {i}: tell me about the {WORDS[i]}.",),
            f"The {WORDS[i]} {WORDS[i + 2]}.",
            [6, 2][i % 2],
            contributor="ann",
        )
        for i in range(8)
    ]


def load_json(path: Path, cache: Path) -> Any:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def one_step(config_class: type, out: Path, **extra: Any) -> Any:
    return config_class(
        output_dir=str(out),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **extra,
    )


def assert_one_step(trainer: Any) -> None:
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert math.isfinite(result.training_loss)


def test_sft_export_trains_with_sft_trainer(tmp_path: Path) -> None:
    from trl import SFTConfig, SFTTrainer

    data = load_json(write_revision_sft_jsonl(revisions(), tmp_path / "sft.jsonl"), tmp_path)
    assert data.column_names == ["messages"] and len(data) == 8
    model, tokenizer = load_model("tiny", "causal-lm")
    trainer = SFTTrainer(
        model=model,
        args=one_step(SFTConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    # The conversation went through the chat template, the revision as the assistant's turn.
    text = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert "<|im_start|>assistant" in text and "fine thing" in text and "apple river" not in text
    assert_one_step(trainer)


@pytest.mark.parametrize("conversational", [False, True])
def test_revision_pairs_train_with_dpo_trainer(tmp_path: Path, conversational: bool) -> None:
    from trl import DPOConfig, DPOTrainer

    path = write_revision_trl_jsonl(
        revisions(), tmp_path / "trl.jsonl", conversational=conversational
    )
    data = load_json(path, tmp_path)
    assert data.column_names == ["prompt", "chosen", "rejected"] and len(data) == 8
    model, tokenizer = load_model("tiny", "causal-lm")
    trainer = DPOTrainer(
        model=model,
        # TRL would reload the reference by the model's hub name, which "tiny" has not.
        ref_model=copy.deepcopy(model).eval(),
        args=one_step(DPOConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(trainer)
    # At the first step the policy equals the reference: the loss is log 2.
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)


def test_revision_pairs_train_with_reward_trainer(tmp_path: Path) -> None:
    from trl import RewardConfig, RewardTrainer

    data = load_json(write_revision_trl_jsonl(revisions(), tmp_path / "trl.jsonl"), tmp_path)
    model, tokenizer = load_model("tiny", "sequence-classification", num_labels=1)
    trainer = RewardTrainer(
        model=model,
        args=one_step(RewardConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(trainer)


def test_rating_export_trains_with_kto_trainer(tmp_path: Path) -> None:
    from trl import KTOConfig, KTOTrainer

    data = load_json(write_rating_kto_jsonl(ratings(), tmp_path / "kto.jsonl"), tmp_path)
    assert data.column_names == ["prompt", "completion", "label"]
    assert data["label"] == [True, False] * 4
    model, tokenizer = load_model("tiny", "causal-lm")
    trainer = KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model).eval(),
        # KTO estimates its KL term from the other completions of a batch: at least 2 rows.
        args=one_step(KTOConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(trainer)
