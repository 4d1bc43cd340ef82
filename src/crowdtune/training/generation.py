"""Generating answers in batches, and scoring answers with a reward model.

Prompts are formatted the way TRL formats them when it trains (``trl.data_utils``): a prompt
that is a list of ``{"role", "content"}`` messages goes through the tokenizer's chat template
with the generation prompt; a plain string is used as it is, because the SFT, DPO and reward
stages train on plain-string prompts without a template. ``chat_template=True`` wraps plain
strings as one user message instead (for an instruct model assessed on raw instructions).

Generation pads on the left (a decoder-only model continues the last token of each row) and
returns only the new text. Long prompts are cut from the left, keeping their end, which is the
part the answer continues. Both functions run where the model is; :func:`on_inference_device`
moves a freshly loaded model to the GPU when there is one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "Prompt",
    "Generations",
    "generate",
    "on_inference_device",
    "prompt_text",
    "reward_scores",
]

#: A prompt: plain text, or a conversation as a list of ``{"role", "content"}`` messages.
Prompt = str | list[dict[str, Any]]


class Generations(list[str]):
    """The new text of each prompt (a list of strings), with ``new_tokens``: its token counts."""

    new_tokens: list[int]


def on_inference_device(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` on the first CUDA device when there is one (else left on the CPU), for
    generation and scoring; the trainers place the models they train themselves."""
    import torch

    if torch.cuda.is_available():
        return model.to("cuda")  # type: ignore[arg-type]
    return model


def _is_conversation(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict)


def prompt_text(
    prompt: Prompt, tokenizer: PreTrainedTokenizerBase, chat_template: bool = False
) -> str:
    """The text a model continues for ``prompt`` (see the module docs)."""
    if isinstance(prompt, str) and not chat_template:
        return prompt
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if not _is_conversation(messages):
        raise TypeError(f"a prompt is a string or a list of messages, got {type(prompt).__name__}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "a conversational prompt needs a tokenizer with a chat template; this one has none"
        )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text)


@contextmanager
def _sides(tokenizer: PreTrainedTokenizerBase, padding: str, truncation: str) -> Iterator[None]:
    before = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = padding, truncation
    try:
        yield
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = before


def _context_length(model: PreTrainedModel) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    do_sample: bool = False,
    seed: int = 0,
    *,
    chat_template: bool = False,
    max_prompt_tokens: int = 512,
    temperature: float = 1.0,
) -> Generations:
    """Continue every prompt, ``batch_size`` at a time; return only the new text.

    Parameters
    ----------
    model, tokenizer
        A causal LM and its tokenizer (e.g. from :func:`crowdtune.training.load_trained`).
    prompts
        Strings or conversations (see the module docs).
    max_new_tokens
        New tokens per answer at most (generation stops earlier at EOS).
    batch_size
        Prompts per forward pass.
    do_sample
        Sample (at ``temperature``) instead of greedy decoding.
    seed
        Seeds sampling (the global torch RNG is left as it was).
    chat_template
        Wrap plain-string prompts as one user message and apply the chat template.
    max_prompt_tokens
        Prompts longer than this are cut from the left (also to fit the model's context).

    Returns
    -------
    Generations
        One string per prompt, in order; ``.new_tokens`` counts the tokens generated for each
        (EOS and padding excluded).
    """
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be at least 1")
    context = _context_length(model)
    limit = max_prompt_tokens
    if context is not None:
        limit = max(1, min(limit, context - max_new_tokens))
    texts = [prompt_text(p, tokenizer, chat_template) for p in prompts]
    stop = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if do_sample:
        options["temperature"] = temperature
    else:  # a checkpoint's own sampling defaults would only warn under greedy decoding
        options.update(temperature=None, top_p=None, top_k=None)
    answers = Generations()
    answers.new_tokens = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), _sides(tokenizer, "left", "left"):
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                # Chat templates write the special tokens themselves; plain text gets the
                # tokenizer's own (as TRL tokenizes it).
                batch = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    add_special_tokens=not (chat_template or _is_conversation(prompts[start])),
                ).to(device)
                output = model.generate(**batch, **options)  # type: ignore[operator]
                new = output[:, batch["input_ids"].shape[1] :]
                for row in new.tolist():
                    kept = []
                    for token in row:
                        if token in stop:
                            break
                        kept.append(token)
                    answers.append(str(tokenizer.decode(kept, skip_special_tokens=True)))
                    answers.new_tokens.append(len(kept))
    finally:
        model.train(was_training)
    return answers


def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    batch_size: int = 8,
    *,
    max_length: int = 1024,
) -> list[float]:
    """A reward model's score of each (prompt, completion), formatted as TRL's RewardTrainer
    formats its training pairs: a conversation gets the answer as an assistant message and the
    chat template; plain text is ``prompt + completion + EOS``. Cut from the left beyond
    ``max_length`` tokens (or the model's context)."""
    import torch

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    context = _context_length(model)
    limit = max_length if context is None else min(max_length, context)
    eos = tokenizer.eos_token or ""
    texts: list[str] = []
    special: list[bool] = []
    for prompt, completion in zip(prompts, completions, strict=True):
        if _is_conversation(prompt):
            assert isinstance(prompt, list)
            messages = [*prompt, {"role": "assistant", "content": completion}]
            texts.append(str(tokenizer.apply_chat_template(messages, tokenize=False)))
            special.append(False)
        else:
            text = f"{prompt}{completion}"
            texts.append(text if text.endswith(eos) else text + eos)
            special.append(True)
    scores: list[float] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), _sides(tokenizer, "right", "left"):
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    add_special_tokens=special[start],
                ).to(device)
                logits = model(**batch).logits
                scores.extend(float(v) for v in logits[:, 0].float().cpu())
    finally:
        model.train(was_training)
    return scores
