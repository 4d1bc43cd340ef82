"""A transformer that reads the prompt and both responses and says which one wins (A, B or tie).

:class:`TransformerPreferenceModel` puts a 3-way classification head on a causal language model
and trains a LoRA adapter (PEFT) plus that head on the comparisons, each pair in both orders with
its label swapped; predictions average both orders (:func:`~crowdtune.preference.base.symmetrize`),
so the order in which the responses are shown cannot matter. This is the recipe of the strong
solutions of the LMSYS Chatbot Arena preference competition, which fine-tuned Gemma-2-9B this way
(LoRA r=16, one epoch) and reached a log loss of about 0.985, against ln 3 = 1.0986 for a
uniform guess. (That figure is quoted, not reproduced here.)

Each pair becomes one text::

    ### Prompt:
    <prompt>

    ### Response A:
    <response a>

    ### Response B:
    <response b>

    ### Which response is better?

and when it is longer than ``max_length`` tokens, each of the three parts is cut to a share of the
budget (parts shorter than an equal share keep every token and leave the rest to the others, see
:func:`~crowdtune.training.lora.allocate_lengths`), so a long prompt or a long response A never
pushes response B out. The LoRA machinery (device and bf16, adapter, training loop, save and load)
is :class:`~crowdtune.training.lora.LoraSequenceModel`, shared with the curation cross-encoder.

On a laptop (no GPU) the default ``model="tiny"`` builds a 2-layer GPT-2 from a config with a
tokenizer trained on the spot: it learns simple toy rules in seconds and is what the tests use,
but it knows no language. For real predictions, run on a GPU with a real checkpoint, e.g.::

    from crowdtune.preference.transformer import TransformerPreferenceModel

    model = TransformerPreferenceModel(
        model="google/gemma-2-9b-it",  # or a local checkpoint directory
        max_length=1024,
        lora_r=16,
        lora_alpha=32,
        learning_rate=2e-4,
        batch_size=4,
        gradient_accumulation=4,
        epochs=1,
        gradient_checkpointing=True,  # saves most activation memory for long inputs
        verbose=True,
    )  # device="auto" picks the GPU, bf16="auto" uses bf16 where the GPU supports it
    model.fit(train_frame, train_frame["label"])
    model.save("models/gemma-pref")  # the adapter, head and tokenizer; the base is named
    probabilities = TransformerPreferenceModel.load("models/gemma-pref").predict_proba(test_frame)

A 9B model in bf16 takes about 18 GB of GPU memory for its weights; with LoRA the optimizer state
is small, so one 40-80 GB GPU should do (not measured here). On a GPU that lacks bf16,
``bf16="auto"`` trains in fp32. On a small CPU shared with other work, ``torch.set_num_threads(1)``
can make the tiny model many times faster (OpenMP threads spinning against each other).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from crowdtune.preference.base import (
    check_frame,
    check_labels,
    swap_labels,
    symmetrize,
    weighted_rows,
)
from crowdtune.records import LABELS
from crowdtune.training.lora import (
    LoraSequenceModel,
    allocate_lengths,
    forward_logits,
    special_affixes,
    token_ids,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "TEMPLATE_HEADERS",
    "TransformerPreferenceModel",
    "encode_pairs",
]

#: The fixed text around the three parts: before the prompt, before A, before B, after B.
TEMPLATE_HEADERS = (
    "### Prompt:\n",
    "\n\n### Response A:\n",
    "\n\n### Response B:\n",
    "\n\n### Which response is better?",
)


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, X: pd.DataFrame, max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of every pair in its own order and swapped, each at most ``max_length`` long.

    Both orders keep the same number of tokens of each part
    (:func:`~crowdtune.training.lora.allocate_lengths` is applied once per pair), so the swapped
    text shows exactly the same content. Special-token strings inside the texts (``<|im_end|>``,
    ``<bos>``...) are read as plain text (:func:`~crowdtune.training.lora.token_ids`).

    Returns
    -------
    tuple of two lists of token-id lists
        ``(a_first, b_first)``, one entry per row of ``X``.

    Raises
    ------
    ValueError
        When ``max_length`` leaves no room for the texts after the template and special tokens.
    """
    X = check_frame(X)
    prefix, suffix = special_affixes(tokenizer)
    head_p, head_a, head_b, tail = token_ids(tokenizer, TEMPLATE_HEADERS)
    fixed = len(prefix) + len(head_p) + len(head_a) + len(head_b) + len(tail) + len(suffix)
    budget = max_length - fixed
    if budget < 3:
        raise ValueError(
            f"max_length={max_length} leaves no room for the texts: the template and special "
            f"tokens alone take {fixed} tokens; use max_length >= {fixed + 3}"
        )
    # Whole texts are tokenized, then cut part by part.
    prompts = token_ids(tokenizer, [str(t) for t in X["prompt"]])
    responses_a = token_ids(tokenizer, [str(t) for t in X["response_a"]])
    responses_b = token_ids(tokenizer, [str(t) for t in X["response_b"]])
    a_first, b_first = [], []
    for p, a, b in zip(prompts, responses_a, responses_b, strict=True):
        keep_p, keep_a, keep_b = allocate_lengths([len(p), len(a), len(b)], budget)
        p, a, b = p[:keep_p], a[:keep_a], b[:keep_b]
        a_first.append(prefix + head_p + p + head_a + a + head_b + b + tail + suffix)
        b_first.append(prefix + head_p + p + head_a + b + head_b + a + tail + suffix)
    return a_first, b_first


class TransformerPreferenceModel(ClassifierMixin, LoraSequenceModel):
    """A LoRA-tuned language model with a 3-way head: P(A better), P(B better), P(tie).

    Parameters
    ----------
    model : str, default="tiny"
        ``"tiny"`` (a 2-layer GPT-2 built from a config, for tests and laptops), a local
        checkpoint directory, or a hub name (see :func:`crowdtune.training.load_model`).
    lora_r, lora_alpha, lora_dropout : LoRA rank, scale and dropout.
    target_modules : str or list of str, default="all-linear"
        Which layers get a LoRA adapter (PEFT's ``target_modules``); the head is always trained.
    max_length : int, default=1024
        Tokens per pair, template included; longer pairs are cut part by part.
    learning_rate, weight_decay : AdamW settings.
    warmup_ratio : float, default=0.1
        Share of the steps over which the learning rate rises linearly; it then decays linearly
        to zero.
    epochs : int, default=1
        Passes over the data (each pair in both orders), unless ``max_steps`` is set.
    max_steps : int or None, default=None
        Number of optimizer steps; overrides ``epochs`` (the data are cycled as often as needed).
    batch_size : int, default=4
        Texts per forward pass (training and prediction).
    gradient_accumulation : int, default=1
        Forward passes per optimizer step.
    max_grad_norm : float, default=1.0
        Gradient clipping.
    gradient_checkpointing : bool, default=False
        Recompute activations in the backward pass (less memory, ~30 % slower).
    random_state : int, default=0
        Seeds the tiny model's weights, the adapter's initialisation, the data order and dropout;
        the global RNGs are left as they were.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; or any torch device string.
    bf16 : "auto" or bool, default="auto"
        Train and predict under bf16 autocast with bf16 base weights (trainable weights stay
        fp32). ``"auto"``: only on a CUDA GPU that supports bf16; the CPU runs in full fp32.
    verbose : bool, default=False
        Show a progress bar with the running loss.

    Attributes
    ----------
    classes_ : ndarray of shape (3,)
        ``[0, 1, 2]`` = ``[A, B, TIE]``.
    model_ : peft.PeftModel
        The fitted model (base + adapter + head), in eval mode on ``device_``.
    tokenizer_ : transformers tokenizer
    loss_history_ : list of float
        Training loss of every optimizer step.
    device_ : torch.device
    bf16_ : bool
        Whether bf16 is in use.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"prompt": ["Say hi"] * 4, "response_a": ["hi", "bye", "hi", "bye"],
    ...                   "response_b": ["bye", "hi", "hi", "bye"]})
    >>> model = TransformerPreferenceModel(max_steps=2, max_length=64).fit(X, [0, 1, 2, 2])
    >>> model.predict_proba(X).shape, len(model.loss_history_)
    ((4, 3), 2)
    """

    #: Outputs of the head: A, B, tie.
    _num_labels = len(LABELS)

    def __init__(
        self,
        *,
        model: str = "tiny",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        target_modules: str | list[str] = "all-linear",
        max_length: int = 1024,
        learning_rate: float = 2e-4,
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

    # -------------------------------------------------------------------------------- training

    def fit(self, X: pd.DataFrame, y: Any, sample_weight: Any = None) -> TransformerPreferenceModel:
        """Train the adapter and head on every pair in both orders.

        Parameters
        ----------
        X : DataFrame with columns prompt, response_a, response_b
        y : array-like of shape (n_comparisons,) with labels in ``[0, 1, 2]`` = ``[A, B, TIE]``
        sample_weight : array-like of shape (n_comparisons,), optional
            Each pair's weight in the cross-entropy (pairs of weight 0 are left out). The
            weights are rescaled to mean 1, so the step size is that of an unweighted fit.
        """
        import torch

        X = check_frame(X)
        X, labels, weights, _ = weighted_rows(X, check_labels(y, len(X)), sample_weight)
        weights = None if weights is None else weights / weights.mean()
        if len(X) == 0:
            raise ValueError("cannot fit on an empty comparison frame")
        self._validate_params()
        device, bf16 = self._resolve_device()
        # Free a previous fit's model first: two 9B models may not fit on one GPU.
        for attribute in ("model_", "tokenizer_"):
            self.__dict__.pop(attribute, None)
        with self._forked_rng(device):
            torch.manual_seed(self.random_state)
            model, tokenizer = self._fresh_model(device, bf16)
            a_first, b_first = encode_pairs(tokenizer, X, int(self.max_length))
            texts = a_first + b_first
            targets = torch.as_tensor(np.concatenate([labels, swap_labels(labels)]))
            row_weights = None if weights is None else torch.as_tensor(np.tile(weights, 2))
            self.loss_history_ = self._train(
                model, tokenizer, texts, targets, device, bf16, row_weights
            )
        model.eval()
        self.model_ = model
        self.tokenizer_ = tokenizer
        self.device_ = device
        self.bf16_ = bf16
        self.classes_ = np.arange(len(LABELS))
        return self

    def _train(
        self,
        model: Any,
        tokenizer: Any,
        texts: list[list[int]],
        targets: torch.Tensor,
        device: torch.device,
        bf16: bool,
        weights: torch.Tensor | None = None,
    ) -> list[float]:
        import torch

        def batch_loss(rows: list[int]) -> torch.Tensor:
            logits = forward_logits(
                model, [texts[i] for i in rows], tokenizer.pad_token_id, device, bf16
            )
            if weights is None:
                return torch.nn.functional.cross_entropy(logits, targets[rows].to(device))
            losses = torch.nn.functional.cross_entropy(
                logits, targets[rows].to(device), reduction="none"
            )
            return (losses * weights[rows].to(device, losses.dtype)).mean()

        return self._optimize(model, len(texts), batch_loss)

    # ------------------------------------------------------------------------------ prediction

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(A), P(B), P(TIE) per row, averaged over both orders of the pair.

        Returns
        -------
        ndarray of shape (n_comparisons, 3)
        """
        check_is_fitted(self, "model_")
        X = check_frame(X)
        a_first, b_first = encode_pairs(self.tokenizer_, X, int(self.max_length))
        probabilities = self._proba_ids(a_first + b_first)
        return symmetrize(probabilities[: len(X)], probabilities[len(X) :])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class index per row (``0`` A, ``1`` B, ``2`` tie)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def _after_load(self) -> None:
        self.classes_ = np.arange(len(LABELS))

    def _proba_ids(self, texts: list[list[int]]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), len(LABELS)), dtype=np.float64)
        # Sorting by length wastes little on padding. Ties are broken by content, not by position,
        # so a frame and its swap (the same texts in another order) are cut into the same batches
        # and the symmetric average comes out exactly symmetric.
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), texts[i]))
        pad_id = self.tokenizer_.pad_token_id
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                logits = forward_logits(
                    self.model_, [texts[i] for i in rows], pad_id, self.device_, self.bf16_
                )
                out[rows] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out
