"""The LoRA cross-encoder quality scorer: a causal LM with a 1-output head, trained pairwise.

:class:`CrossEncoderScorer` reads one instruction item (``"Instruction: ... Response: ..."``) and
outputs its quality score; it is trained with the pairwise loss ``-log σ(s_better - s_worse)`` in
a plain PyTorch loop and shares device, bf16, LoRA, the training loop and save/load with the
preference transformer through :class:`crowdtune.training.lora.LoraSequenceModel`. It is meant for
a GPU and a real checkpoint; ``model="tiny"`` knows no language. The other scorers are in
:mod:`crowdtune.curation.quality`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from crowdtune.curation.quality import check_pairs
from crowdtune.datasets.car import split_item_text
from crowdtune.training.lora import (
    LoraSequenceModel,
    allocate_lengths,
    forward_logits,
    special_affixes,
    token_ids,
)

if TYPE_CHECKING:
    import torch

__all__ = ["CrossEncoderScorer"]


class CrossEncoderScorer(LoraSequenceModel):
    """A LoRA-tuned causal LM with a 1-output head, trained with ``-log σ(s_better - s_worse)``.

    The parameters are those of
    :class:`~crowdtune.preference.transformer.TransformerPreferenceModel` (``model="tiny"`` for
    tests; a checkpoint such as ``"Qwen/Qwen2.5-0.5B"`` on a GPU), except that ``batch_size``
    counts pairs (each step reads ``2 * batch_size`` texts) and ``max_length`` is per item. An
    item longer than ``max_length`` tokens has its instruction and response cut by
    :func:`~crowdtune.training.lora.allocate_lengths`, so a long instruction never pushes
    the response out.

    Attributes
    ----------
    model_, tokenizer_, device_, bf16_
        As in ``TransformerPreferenceModel``.
    loss_history_ : list of float
        Pairwise loss of every optimizer step.
    """

    _num_labels = 1

    def __init__(
        self,
        *,
        model: str = "tiny",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        target_modules: str | list[str] = "all-linear",
        max_length: int = 512,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.1,
        epochs: int = 1,
        max_steps: int | None = None,
        batch_size: int = 4,
        gradient_accumulation: int = 1,
        max_grad_norm: float = 1.0,
        gradient_checkpointing: bool = False,
        random_state: int = 0,
        device: str = "auto",
        bf16: str | bool = "auto",
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = target_modules
        self.max_length = max_length
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.gradient_accumulation = gradient_accumulation
        self.max_grad_norm = max_grad_norm
        self.gradient_checkpointing = gradient_checkpointing
        self.random_state = random_state
        self.device = device
        self.bf16 = bf16
        self.verbose = verbose

    def encode(self, texts: Sequence[str], tokenizer: Any | None = None) -> list[list[int]]:
        """Token ids of each item, at most ``max_length`` long (instruction and response cut
        by :func:`~crowdtune.training.lora.allocate_lengths`)."""
        tokenizer = self.tokenizer_ if tokenizer is None else tokenizer
        texts = [str(t) for t in texts]
        if not texts:
            return []
        parts = [split_item_text(t) for t in texts]
        prefix, suffix = special_affixes(tokenizer)
        head, middle = token_ids(tokenizer, ["Instruction: ", " Response: "])
        fixed = len(prefix) + len(head) + len(middle) + len(suffix)
        budget = int(self.max_length) - fixed
        if budget < 2:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for the texts: the template and "
                f"special tokens take {fixed} tokens; use max_length >= {fixed + 2}"
            )
        out = []
        instructions = token_ids(tokenizer, [p[0] for p in parts])
        responses = token_ids(tokenizer, [p[1] for p in parts])
        for instruction, response in zip(instructions, responses, strict=True):
            keep_i, keep_r = allocate_lengths([len(instruction), len(response)], budget)
            out.append(prefix + head + instruction[:keep_i] + middle + response[:keep_r] + suffix)
        return out

    def fit(self, better: Sequence[str], worse: Sequence[str]) -> CrossEncoderScorer:
        """Train the adapter and head on pairs: ``better[i]`` beats ``worse[i]``."""
        import torch

        better, worse = check_pairs(better, worse)
        self._validate_params()
        device, bf16 = self._resolve_device()
        for attribute in ("model_", "tokenizer_"):
            self.__dict__.pop(attribute, None)
        with self._forked_rng(device):
            torch.manual_seed(self.random_state)
            model, tokenizer = self._fresh_model(device, bf16)
            better_ids = self.encode(better, tokenizer)
            worse_ids = self.encode(worse, tokenizer)
            self.loss_history_ = self._train_pairs(
                model, tokenizer, better_ids, worse_ids, device, bf16
            )
        model.eval()
        self.model_, self.tokenizer_, self.device_, self.bf16_ = model, tokenizer, device, bf16
        return self

    def _train_pairs(
        self,
        model: Any,
        tokenizer: Any,
        better: list[list[int]],
        worse: list[list[int]],
        device: torch.device,
        bf16: bool,
    ) -> list[float]:
        import torch

        def batch_loss(rows: list[int]) -> torch.Tensor:
            texts = [better[i] for i in rows] + [worse[i] for i in rows]
            scores = forward_logits(model, texts, tokenizer.pad_token_id, device, bf16)[:, 0]
            margin = scores[: len(rows)] - scores[len(rows) :]
            return torch.nn.functional.softplus(-margin).mean()  # -log σ(margin)

        return self._optimize(model, len(better), batch_loss)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The head's output per item (higher = better)."""
        import torch

        check_is_fitted(self, "model_")
        ids = self.encode(texts)
        out = np.empty(len(ids), dtype=np.float64)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        step = 2 * int(self.batch_size)
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(order), step):
                rows = order[start : start + step]
                logits = forward_logits(
                    self.model_,
                    [ids[i] for i in rows],
                    self.tokenizer_.pad_token_id,
                    self.device_,
                    self.bf16_,
                )
                out[rows] = logits[:, 0].cpu().numpy()
        return out
