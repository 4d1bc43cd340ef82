"""Completion log-likelihoods and DPO's implicit reward, against a hand computation on the tiny
model, and against the tokens TRL's SFT trainer trains on."""

import math

import numpy as np
import pytest
import torch

from crowdtune.training import load_model
from crowdtune.training.likelihood import completion_nll, completion_token_ids, implicit_rewards

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple:
    return load_model("tiny", seed=0)


def hand_nll(model, tokenizer, prompt: str, completion: str) -> tuple[float, int]:
    """Token by token: the NLL of every completion token (EOS included) given all before it."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    total = 0.0
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    for t in range(len(prompt_ids), len(ids)):
        total -= float(torch.log_softmax(logits[t - 1], dim=-1)[ids[t]])
    return total, len(ids) - len(prompt_ids)


def test_nll_matches_a_hand_computation_in_any_batch(tiny: tuple) -> None:
    model, tokenizer = tiny
    prompts = ["What is the capital of France?", "Say hi.", "Write a short poem about the sea."]
    completions = [" Paris.", " Hello there, how are you today?", " Waves."]
    expected = [hand_nll(model, tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    for batch_size in (1, 2, 8):  # padding must not change a row's value
        nll, tokens = completion_nll(model, tokenizer, prompts, completions, batch_size=batch_size)
        assert tokens.tolist() == [n for _, n in expected]
        np.testing.assert_allclose(nll, [v for v, _ in expected], rtol=1e-5)


def test_rows_are_tokenised_as_trl_sft_tokenises_them(tiny: tuple) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = tiny
    rows = [
        {"prompt": "Say hi.", "completion": " Hello!"},
        {
            "prompt": [{"role": "user", "content": "Say hi."}],
            "completion": [{"role": "assistant", "content": "Hello!"}],
        },
    ]
    for row in rows:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(output_dir="/tmp/unused", report_to="none", use_cpu=True, max_length=64),
            train_dataset=Dataset.from_list([row]),
            processing_class=tokenizer,
        )
        example = trainer.train_dataset[0]
        ids, start = completion_token_ids(tokenizer, row["prompt"], row["completion"])
        assert example["input_ids"] == ids
        trained = [i for i, label in enumerate(example["labels"]) if label != -100]
        assert trained == list(range(start, len(ids)))


def test_max_length_keeps_the_start_and_counts_what_is_left(tiny: tuple) -> None:
    model, tokenizer = tiny
    _, start = completion_token_ids(tokenizer, "Say hi.", " Hello there, how are you today?")
    long_answer = [" Hello there, how are you today?"]
    _, tokens = completion_nll(model, tokenizer, ["Say hi."], long_answer, max_length=start + 3)
    assert tokens.tolist() == [3]
    _, none_left = completion_nll(model, tokenizer, ["Say hi."], [" Hi"], max_length=start)
    assert none_left.tolist() == [0]
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        completion_nll(model, tokenizer, ["a", "b"], ["c"])


def test_implicit_reward_is_the_log_ratio_and_zero_against_itself(tiny: tuple) -> None:
    model, tokenizer = tiny
    other, _ = load_model("tiny", seed=1)
    prompts, completions = ["Say hi.", "Say bye."], [" Hi!", " Bye."]
    assert np.allclose(implicit_rewards(model, model, tokenizer, prompts, completions), 0.0)
    rewards = implicit_rewards(other, model, tokenizer, prompts, completions)
    for reward, prompt, completion in zip(rewards, prompts, completions, strict=True):
        policy, _ = hand_nll(other, tokenizer, prompt, completion)
        reference, _ = hand_nll(model, tokenizer, prompt, completion)
        assert math.isclose(reward, reference - policy, abs_tol=1e-4)  # float32 sums
