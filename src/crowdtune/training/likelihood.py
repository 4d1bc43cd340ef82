"""How likely a model finds a completion: summed token log-likelihoods, and DPO's implicit reward.

The tokens are those the trainers train on. :func:`completion_nll` formats every (prompt,
completion) exactly as TRL's ``SFTTrainer`` and ``DPOTrainer`` format a prompt-completion row
(``trl.data_utils._tokenize`` and the trainers' ``tokenize_fn``), so a held-out NLL measures the
loss the training minimised:

- a **plain-string** row is ``prompt + completion + EOS`` (EOS added unless the completion ends
  with it), tokenised with the tokenizer's own special tokens; the prompt alone is tokenised the
  same way;
- a **conversational** row (the prompt a list of ``{"role", "content"}`` messages) goes through
  the chat template: the prompt with the generation prompt, the whole conversation without it
  (a completion given as a string becomes one assistant message).

The completion's tokens are those after the longest common prefix of the two token sequences
(TRL's ``common_prefix_length``: a template may render the prompt alone differently), and
sequences are cut to ``max_length`` keeping their start (TRL's default ``truncation_mode``), so
a completion cut away entirely counts zero tokens. Each token's NLL is that of the model's
prediction of it from everything before it, EOS included, as in the training loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from crowdtune.training.generation import Prompt, on_inference_device

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Completion", "completion_nll", "completion_token_ids", "implicit_rewards"]

#: A completion: plain text, or the assistant messages that continue a conversation.
Completion = str | list[dict[str, Any]]


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _template_ids(
    tokenizer: PreTrainedTokenizerBase, messages: list[Any], **kwargs: Any
) -> list[int]:
    encoded: Any = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, **kwargs
    )
    return [int(i) for i in encoded["input_ids"]]


def completion_token_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: Completion
) -> tuple[list[int], int]:
    """The token ids of a prompt-completion row as TRL trains on it, and where its completion
    starts (see the module docs; nothing is cut to a maximum length here)."""
    if _is_conversation(prompt):
        assert isinstance(prompt, list)
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        prompt_ids = _template_ids(tokenizer, prompt, add_generation_prompt=True)
        full_ids = _template_ids(tokenizer, [*prompt, *completion])
    elif isinstance(prompt, str) and isinstance(completion, str):
        eos = tokenizer.eos_token or ""
        text = completion if completion.endswith(eos) else completion + eos
        prompt_ids = list(tokenizer(text=prompt)["input_ids"])
        full_ids = list(tokenizer(text=prompt + text)["input_ids"])
    else:
        raise TypeError(
            "a prompt is a string (with a string completion) or a list of messages, got "
            f"{type(prompt).__name__} and {type(completion).__name__}"
        )
    shared = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        shared += 1
    return full_ids, shared


def completion_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    completions: Sequence[Completion],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The summed negative log-likelihood (nats) of each completion given its prompt.

    Parameters
    ----------
    model, tokenizer
        A causal LM and its tokenizer (e.g. from :func:`crowdtune.training.load_trained`); the
        model is moved to the GPU when there is one
        (:func:`~crowdtune.training.generation.on_inference_device`).
    prompts, completions
        Rows as the SFT and DPO stages read them (see the module docs).
    batch_size
        Rows per forward pass (sorted by length first, so a batch pads little).
    max_length
        Tokens per row at most, prompt included (the stages' ``max_length``).

    Returns
    -------
    nll_sum : ndarray of float, shape (n,)
        Summed NLL of each completion's tokens (0 where none are left).
    n_tokens : ndarray of int, shape (n,)
        The completion tokens counted. A row's mean per-token NLL is ``nll_sum / n_tokens``.

    Examples
    --------
    >>> from crowdtune.training import load_model
    >>> model, tokenizer = load_model("tiny")
    >>> nll, tokens = completion_nll(model, tokenizer, ["Say hi."], [" Hi!"])
    >>> int(tokens[0]) > 0, bool(nll[0] > 0)
    (True, True)
    """
    import torch

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if batch_size < 1 or max_length < 1:
        raise ValueError(
            f"batch_size and max_length must be positive, got {batch_size}, {max_length}"
        )
    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        ids, start = completion_token_ids(tokenizer, prompt, completion)
        rows.append((ids[:max_length], start))
    nll_sum = np.zeros(len(rows))
    n_tokens = np.zeros(len(rows), dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = on_inference_device(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    try:
        with torch.no_grad():
            for begin in range(0, len(order), batch_size):
                batch = order[begin : begin + batch_size]
                width = max(len(rows[i][0]) for i in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                counted = torch.zeros((len(batch), width), dtype=torch.bool)
                for j, i in enumerate(batch):  # right padding: positions as in training
                    ids, start = rows[i]
                    input_ids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention[j, : len(ids)] = 1
                    counted[j, max(start, 1) : len(ids)] = True  # token 0 has no prediction
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device)
                ).logits
                # Position t predicts token t + 1, as in the causal LM loss.
                log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                targets = input_ids[:, 1:].to(device)
                token_nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                mask = counted[:, 1:].to(device)
                sums = (token_nll * mask).sum(dim=1).cpu().numpy()
                counts = mask.sum(dim=1).cpu().numpy()
                for j, i in enumerate(batch):
                    nll_sum[i], n_tokens[i] = float(sums[j]), int(counts[j])
    finally:
        model.train(was_training)
    return nll_sum, n_tokens


def implicit_rewards(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    completions: Sequence[Completion],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> np.ndarray:
    """DPO's implicit reward of each completion, ``log π(y|x) − log π_ref(y|x)`` (up to the
    factor β), from the summed log-likelihoods of :func:`completion_nll`.

    A DPO-trained policy prefers the answer whose reward is higher; the share of gold votes
    where the winner's reward beats the loser's is its preference accuracy."""
    options: dict[str, int] = {"batch_size": batch_size, "max_length": max_length}
    policy_nll, _ = completion_nll(policy, tokenizer, prompts, completions, **options)
    reference_nll, _ = completion_nll(reference, tokenizer, prompts, completions, **options)
    return reference_nll - policy_nll
