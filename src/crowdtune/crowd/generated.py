"""Closing the loop: a model's answers to new prompts become the next items the crowd judges.

:func:`generated_items` answers each prompt with one model (a revision or rating project: the
crowd rewrites or scores the base model's answer) or with two (a pairwise project: the base
against another model of the lineage, so the crowd's votes rank the lineage). Pairwise items
carry the models' names in ``model_a`` / ``model_b``, and which model is shown as A is drawn per
item from ``seed``: a model always shown first would inherit the crowd's position bias.

The items are dicts in the form :func:`crowdtune.store.repository.add_items` takes; storing
them is the caller's (``crowdtune items generate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdtune.training import generate, load_trained
from crowdtune.training.generation import Prompt, on_inference_device

__all__ = ["ItemModel", "generated_items", "prompt_turns", "single_turn"]


@dataclass(frozen=True)
class ItemModel:
    """A model that answers prompts: ``name`` as items and leaderboards show it, ``path`` as
    :func:`crowdtune.training.load_trained` loads it (``tiny``, ``smollm2``, a checkpoint or a
    LoRA adapter folder)."""

    name: str
    path: str


def prompt_turns(prompt: Prompt) -> list[str]:
    """The user turns of ``prompt`` as an item stores them: a plain string is one turn; a
    conversation must be user turns only (an item's answer continues its last turn).

    >>> prompt_turns([{"role": "user", "content": "Hi"}])
    ['Hi']
    """
    if isinstance(prompt, str):
        return [prompt]
    roles = {str(message.get("role")) for message in prompt}
    if roles != {"user"}:
        raise ValueError(
            f"a conversation prompt with roles {sorted(roles)}: items are made of single-turn "
            "or user-only prompts"
        )
    return [str(message["content"]) for message in prompt]


def single_turn(prompt: Prompt) -> bool:
    """Whether an item can hold ``prompt`` (:func:`prompt_turns` accepts it)."""
    return isinstance(prompt, str) or all(message.get("role") == "user" for message in prompt)


def _answers(
    model: ItemModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    chat_template: bool,
    advance: Callable[[int], None],
) -> list[str]:
    """``model``'s greedy answers, ``batch_size`` prompts at a time (``advance`` after each)."""
    loaded, tokenizer = load_trained(model.path)
    loaded = on_inference_device(loaded)
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        answers += generate(loaded, tokenizer, batch, max_new_tokens, batch_size, seed=seed,
                            chat_template=chat_template)  # fmt: skip
        advance(len(batch))
    return answers


def _filled(text: str, fallback: str) -> str:
    """An answer an item can hold: a model that stops at once (a tiny model can) says nothing,
    and items refuse blank texts."""
    return text if text.strip() else fallback


#: What an item shows for an empty answer (the model stopped at once).
EMPTY_ANSWER = "(no answer)"


def generated_items(
    prompts: Sequence[Prompt],
    kind: str,
    model_a: ItemModel,
    model_b: ItemModel | None = None,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    seed: int = 0,
    chat_template: bool = False,
    advance: Callable[[int], None] = lambda k: None,
) -> list[dict[str, Any]]:
    """Items of a project of ``kind`` answering ``prompts`` with ``model_a`` (and ``model_b``).

    Parameters
    ----------
    prompts
        Plain strings or user-only conversations (:func:`prompt_turns`).
    kind
        ``"pairwise"`` (needs ``model_b``), ``"revision"`` or ``"rating"``.
    model_a, model_b
        The models; for a pairwise project ``model_a`` is the base, ``model_b`` its opponent.
    max_new_tokens, batch_size, chat_template
        As :func:`crowdtune.training.generate` takes them (greedy decoding).
    seed
        Seeds which model each pairwise item shows as A.
    advance
        Called with the number of answers generated after each batch (a progress bar); there
        are ``len(prompts)`` answers per model.

    Returns
    -------
    list of dict
        ``{"prompt", "response", "model_a"}`` items (revision, rating), or ``{"prompt",
        "response_a", "response_b", "model_a", "model_b"}`` (pairwise).
    """
    if kind not in ("pairwise", "revision", "rating"):
        raise ValueError(f"unknown project kind {kind!r}; choose pairwise, revision or rating")
    if (kind == "pairwise") != (model_b is not None):
        raise ValueError("a pairwise project needs two models; a revision or rating project one")
    if model_b is not None and model_b.name == model_a.name:
        raise ValueError(f"both models are {model_a.name!r}: a pair needs two different models")
    turns = [prompt_turns(prompt) for prompt in prompts]
    options = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed,
               "chat_template": chat_template, "advance": advance}  # fmt: skip
    first = _answers(model_a, prompts, **options)  # type: ignore[arg-type]
    if model_b is None:
        return [
            {"prompt": prompt, "response": _filled(answer, EMPTY_ANSWER), "model_a": model_a.name}
            for prompt, answer in zip(turns, first, strict=True)
        ]
    second = _answers(model_b, prompts, **options)  # type: ignore[arg-type]
    swap = np.random.default_rng(seed).random(len(prompts)) < 0.5
    items = []
    for prompt, answer_a, answer_b, swapped in zip(turns, first, second, swap, strict=True):
        pair = [(model_a.name, answer_a), (model_b.name, answer_b)]
        (name_a, text_a), (name_b, text_b) = pair[::-1] if swapped else pair
        items.append({
            "prompt": prompt, "response_a": _filled(text_a, EMPTY_ANSWER),
            "response_b": _filled(text_b, EMPTY_ANSWER), "model_a": name_a, "model_b": name_b,
        })  # fmt: skip
    return items
