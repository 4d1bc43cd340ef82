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
:func:`allocate_lengths`), so a long prompt or a long response A never pushes response B out.

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

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from crowdtune.preference.base import (
    check_frame,
    check_labels,
    swap_labels,
    symmetrize,
)
from crowdtune.records import LABELS

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "TEMPLATE_HEADERS",
    "LoraSequenceModel",
    "TransformerPreferenceModel",
    "allocate_lengths",
    "encode_pairs",
]

#: The fixed text around the three parts: before the prompt, before A, before B, after B.
TEMPLATE_HEADERS = (
    "### Prompt:\n",
    "\n\n### Response A:\n",
    "\n\n### Response B:\n",
    "\n\n### Which response is better?",
)

#: Version of the layout :meth:`TransformerPreferenceModel.save` writes.
_SAVE_FORMAT = 1
#: Models built here from a config, whose weights must be saved (nothing can reload them by name).
_LOCAL_MODELS = ("tiny",)


def allocate_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """How many tokens of each part to keep so that together they fit in ``budget``.

    Parts shorter than an equal share keep all their tokens; the tokens they leave unused are
    shared equally among the longer parts ("water filling"), which are all cut to the same
    length. The result depends only on the lengths, not on the order of the parts, so the pair
    and its swap keep the same tokens. Nothing is cut when everything fits.

    Examples
    --------
    >>> allocate_lengths([10, 500, 40], 100)
    [10, 50, 40]
    >>> allocate_lengths([300, 300, 300], 90)
    [30, 30, 30]
    >>> allocate_lengths([5, 6, 7], 100)
    [5, 6, 7]
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    kept = list(lengths)
    if sum(lengths) <= budget:
        return kept
    remaining = budget
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for position, index in enumerate(order):
        share = remaining // (len(lengths) - position)
        if lengths[index] > share:
            # This part and every longer one get the same share (equal lengths, equal cuts).
            for longer in order[position:]:
                kept[longer] = share
            break
        remaining -= lengths[index]
    return kept


def _special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. Gemma's ``<bos>``)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    return [], []


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, X: pd.DataFrame, max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of every pair in its own order and swapped, each at most ``max_length`` long.

    Both orders keep the same number of tokens of each part (:func:`allocate_lengths` is applied
    once per pair), so the swapped text shows exactly the same content. Special-token strings
    inside the texts (``<|im_end|>``, ``<bos>``...) are read as plain text.

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

    def ids(texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        # Whole texts are tokenized, then cut by allocate_lengths; verbose=False silences the
        # "longer than the maximum sequence length" warning, which does not apply here.
        encoded = tokenizer(
            list(texts), add_special_tokens=False, split_special_tokens=True, verbose=False
        )["input_ids"]
        return [list(e) for e in encoded]

    prefix, suffix = _special_affixes(tokenizer)
    head_p, head_a, head_b, tail = (ids([h])[0] for h in TEMPLATE_HEADERS)
    fixed = len(prefix) + len(head_p) + len(head_a) + len(head_b) + len(tail) + len(suffix)
    budget = max_length - fixed
    if budget < 3:
        raise ValueError(
            f"max_length={max_length} leaves no room for the texts: the template and special "
            f"tokens alone take {fixed} tokens; use max_length >= {fixed + 3}"
        )
    prompts = ids([str(t) for t in X["prompt"]])
    responses_a = ids([str(t) for t in X["response_a"]])
    responses_b = ids([str(t) for t in X["response_b"]])
    a_first, b_first = [], []
    for p, a, b in zip(prompts, responses_a, responses_b, strict=True):
        keep_p, keep_a, keep_b = allocate_lengths([len(p), len(a), len(b)], budget)
        p, a, b = p[:keep_p], a[:keep_a], b[:keep_b]
        a_first.append(prefix + head_p + p + head_a + a + head_b + b + tail + suffix)
        b_first.append(prefix + head_p + p + head_a + b + head_b + a + tail + suffix)
    return a_first, b_first


class LoraSequenceModel(BaseEstimator):
    """What every LoRA-on-a-language-model estimator here shares: parameter checks, device and
    bf16 resolution, the LoRA config, the base model with a ``_num_labels``-output head, a forked
    RNG, and :meth:`save` / :meth:`load`. Subclasses define ``__init__`` with the parameters of
    :class:`TransformerPreferenceModel`, ``fit`` and the prediction methods."""

    #: Outputs of the sequence-classification head.
    _num_labels: int = len(LABELS)

    model: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: str | list[str]
    max_length: int
    learning_rate: float
    epochs: int
    max_steps: int | None
    batch_size: int
    gradient_accumulation: int
    warmup_ratio: float
    seed: int
    device: str
    bf16: str | bool

    # ----------------------------------------------------------------------------------- setup

    def _validate_params(self) -> None:
        positive_ints = {
            "lora_r": self.lora_r,
            "max_length": self.max_length,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "gradient_accumulation": self.gradient_accumulation,
        }
        if self.max_steps is not None:
            positive_ints["max_steps"] = self.max_steps
        for name, value in positive_ints.items():
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be 'auto', True or False, got {self.bf16!r}")

    def _resolve_device(self) -> tuple[torch.device, bool]:
        import torch

        if self.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(self.device)
        if self.bf16 == "auto":
            bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        else:
            bf16 = bool(self.bf16)
        return device, bf16

    def _lora_config(self) -> Any:
        from peft import LoraConfig

        target = self.target_modules
        return LoraConfig(
            task_type="SEQ_CLS",  # also makes the classification head ("score") trainable
            r=int(self.lora_r),
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=target if isinstance(target, str) else list(target),
        )

    def _base_model(self, bf16: bool) -> tuple[Any, Any]:
        import torch

        from crowdtune.training.models import load_model

        options: dict[str, Any] = {}
        if self.model == "tiny":
            options["n_positions"] = max(1024, int(self.max_length))
        return load_model(
            self.model,
            "sequence-classification",
            num_labels=self._num_labels,
            dtype=torch.bfloat16 if bf16 else None,
            seed=self.seed,
            **options,
        )

    def _forked_rng(self, device: torch.device) -> Any:
        import torch

        if device.type != "cuda":
            return torch.random.fork_rng(devices=[])
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])

    # ------------------------------------------------------------------------------ save, load

    def save(self, directory: str | Path) -> Path:
        """Write the fitted model to ``directory`` so that :meth:`load` can read it elsewhere.

        Layout: ``params.json`` (parameters, loss history), ``tokenizer/``, ``adapter/`` (PEFT
        adapter and classification head); for a model built here from a config (``"tiny"``)
        also ``base/`` (its config and every weight), since no name can reload it. A named base
        model is not copied: :meth:`load` reads it again from the same name or path.
        """
        from safetensors.torch import save_model

        check_is_fitted(self, "model_")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        embedded = self.model in _LOCAL_MODELS
        params = self.get_params()
        params["target_modules"] = (
            params["target_modules"]
            if isinstance(params["target_modules"], str)
            else list(params["target_modules"])
        )
        manifest = {
            "format": _SAVE_FORMAT,
            "estimator": type(self).__name__,
            "params": params,
            "base_embedded": embedded,
            "loss_history": list(self.loss_history_),
        }
        (directory / "params.json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.tokenizer_.save_pretrained(directory / "tokenizer")
        self.model_.save_pretrained(directory / "adapter")
        if embedded:
            (directory / "base").mkdir(exist_ok=True)
            self.model_.get_base_model().config.save_pretrained(directory / "base")
            save_model(self.model_, str(directory / "base" / "model.safetensors"))
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a model written by :meth:`save`, ready to predict.

        ``device`` overrides the saved ``device`` parameter (e.g. ``"cpu"`` to read on a laptop
        a model trained on a GPU); ``"auto"`` is resolved on this machine.
        """
        import torch
        from peft import PeftConfig, PeftModel
        from safetensors.torch import load_model as load_weights
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        manifest_path = directory / "params.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path} not found: not a directory written by "
                f"{cls.__name__}.save (expected params.json, tokenizer/, adapter/)"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("estimator") != cls.__name__ or manifest.get("format") != _SAVE_FORMAT:
            raise ValueError(
                f"{manifest_path}: expected format {_SAVE_FORMAT} of {cls.__name__}, got format "
                f"{manifest.get('format')!r} of {manifest.get('estimator')!r}"
            )
        estimator = cls(**manifest["params"])
        if device is not None:
            estimator.device = device
        resolved, bf16 = estimator._resolve_device()
        tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
        if manifest["base_embedded"]:
            config = AutoConfig.from_pretrained(directory / "base")
            with estimator._forked_rng(torch.device("cpu")):
                # Random init, overwritten below; the fork keeps the global RNG as it was.
                base = AutoModelForSequenceClassification.from_config(config)
            model = _with_lora(base, PeftConfig.from_pretrained(str(directory / "adapter")))
            load_weights(model, str(directory / "base" / "model.safetensors"))
            if bf16:
                model.to(torch.bfloat16)
        else:
            base, _ = estimator._base_model(bf16)
            with _quiet_peft():
                model = PeftModel.from_pretrained(base, str(directory / "adapter"))
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.to(resolved)
        model.eval()
        estimator.model_ = model
        estimator.tokenizer_ = tokenizer
        estimator.device_ = resolved
        estimator.bf16_ = bf16
        estimator.loss_history_ = list(manifest["loss_history"])
        estimator._after_load()
        return estimator

    def _after_load(self) -> None:
        """Set what ``fit`` sets besides the model (a hook for subclasses)."""

    def _optimize(
        self, model: Any, n_examples: int, batch_loss: Callable[[list[int]], torch.Tensor]
    ) -> list[float]:
        """The training loop every subclass shares: AdamW over the trainable (LoRA and head)
        parameters, linear warmup and decay, shuffled batches of ``batch_size`` example indices,
        gradient accumulation and clipping. ``batch_loss(rows)`` returns the mean loss of those
        examples. Returns the loss of every optimizer step."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        micro_per_epoch = math.ceil(n_examples / self.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / self.gradient_accumulation)
        total_steps = (
            int(self.max_steps) if self.max_steps is not None else self.epochs * steps_per_epoch
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=self.learning_rate, weight_decay=self.weight_decay
        )
        scheduler = get_linear_schedule_with_warmup(
            optimizer, round(self.warmup_ratio * total_steps), total_steps
        )
        order = torch.Generator().manual_seed(int(self.seed))
        batches = _shuffled_batches(n_examples, int(self.batch_size), order)
        model.train()
        history: list[float] = []
        with _progress(self.verbose, total_steps, "training") as advance:
            for _ in range(total_steps):
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for _ in range(self.gradient_accumulation):
                    loss = batch_loss(next(batches))
                    (loss / self.gradient_accumulation).backward()
                    step_loss += loss.item() / self.gradient_accumulation
                torch.nn.utils.clip_grad_norm_(trainable, self.max_grad_norm)
                optimizer.step()
                scheduler.step()
                history.append(step_loss)
                advance(step_loss)
        return history


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

    @property
    def seed(self) -> int:  # type: ignore[override]  # read-only: set random_state instead
        """``random_state``, under the name the shared LoRA machinery
        (:class:`LoraSequenceModel`) reads; not a parameter."""
        return self.random_state

    # -------------------------------------------------------------------------------- training

    def fit(self, X: pd.DataFrame, y: Any) -> TransformerPreferenceModel:
        """Train the adapter and head on every pair in both orders.

        Parameters
        ----------
        X : DataFrame with columns prompt, response_a, response_b
        y : array-like of shape (n_comparisons,) with labels in ``[0, 1, 2]`` = ``[A, B, TIE]``
        """
        import torch

        X = check_frame(X)
        labels = check_labels(y, len(X))
        if len(X) == 0:
            raise ValueError("cannot fit on an empty comparison frame")
        self._validate_params()
        device, bf16 = self._resolve_device()
        # Free a previous fit's model first: two 9B models may not fit on one GPU.
        for attribute in ("model_", "tokenizer_"):
            self.__dict__.pop(attribute, None)
        with self._forked_rng(device):
            torch.manual_seed(self.random_state)
            base, tokenizer = self._base_model(bf16)
            if self.gradient_checkpointing:
                # Non-reentrant checkpointing needs no input gradients with a frozen base.
                base.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
            model = _with_lora(base, self._lora_config())
            for parameter in model.parameters():
                if parameter.requires_grad and parameter.dtype != torch.float32:
                    # Adapter and head train in fp32 (bf16 updates lose small steps).
                    parameter.data = parameter.data.float()
            model.to(device)
            a_first, b_first = encode_pairs(tokenizer, X, int(self.max_length))
            texts = a_first + b_first
            targets = torch.as_tensor(np.concatenate([labels, swap_labels(labels)]))
            self.loss_history_ = self._train(model, tokenizer, texts, targets, device, bf16)
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
    ) -> list[float]:
        import torch

        def batch_loss(rows: list[int]) -> torch.Tensor:
            input_ids, attention_mask = _pad(
                [texts[i] for i in rows], tokenizer.pad_token_id, device
            )
            with _autocast(device, bf16):
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            return torch.nn.functional.cross_entropy(logits.float(), targets[rows].to(device))

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
                input_ids, attention_mask = _pad([texts[i] for i in rows], pad_id, self.device_)
                with _autocast(self.device_, self.bf16_):
                    logits = self.model_(input_ids=input_ids, attention_mask=attention_mask).logits
                out[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Hide two PEFT warnings that say nothing wrong here: GPT-2's Conv1D layers make PEFT set
    ``fan_in_fan_out`` itself, and PEFT still calls a method that transformers 5 renamed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _with_lora(base: Any, config: Any) -> Any:
    """``base`` wrapped by PEFT with a fresh adapter described by ``config``."""
    from peft import get_peft_model

    with _quiet_peft():
        return get_peft_model(base, config)


def _shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Row indices in batches, reshuffled every epoch, for ever."""
    import torch

    while True:
        permutation = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            yield permutation[start : start + batch_size]


def _pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask. Right padding leaves a causal model's real tokens
    (and their positions) untouched; the head reads the last non-pad token."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _autocast(device: torch.device, bf16: bool) -> Any:
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, description: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar showing the loss when ``enabled``; yields the function that advances
    it (a no-op when not enabled)."""
    if not enabled:
        yield lambda loss: None
        return
    from rich.progress import Progress

    with Progress(*Progress.get_default_columns(), "loss {task.fields[loss]}") as bar:
        task = bar.add_task(description, total=total, loss="-")
        yield lambda loss: bar.update(task, advance=1, loss=f"{loss:.4f}")
