"""LoRA on a language model with a small head: what the LoRA estimators share.

A LoRA estimator puts an ``n``-output sequence-classification head on a causal language model
(:func:`~crowdtune.training.models.load_model`), trains a LoRA adapter (PEFT) plus that head in a
plain PyTorch loop, and reads the head's output on the last non-pad token. Two use it:
:class:`~crowdtune.preference.transformer.TransformerPreferenceModel` (3 outputs: A, B, tie) and
:class:`~crowdtune.curation.cross_encoder.CrossEncoderScorer` (1 output: a quality score).

- :class:`LoraSequenceModel`: the base of those scikit-learn estimators: parameter checks,
  device and bf16 resolution, the LoRA config, a fresh model with its adapter, a forked RNG, the
  training loop, :meth:`~LoraSequenceModel.save` and :meth:`~LoraSequenceModel.load`.
- Texts to token ids: :func:`token_ids`, :func:`special_affixes` and :func:`allocate_lengths`,
  which cuts the parts of a templated text to a shared budget.
- Batches: :func:`pad_batch` (right padding), :func:`bf16_autocast` and :func:`forward_logits`.
- :func:`with_lora` and :func:`quiet_peft` (PEFT without its known-harmless warnings), and
  :func:`loss_progress`, a progress bar that shows the running loss.

torch, transformers and PEFT are imported inside the functions that use them, so importing this
module is cheap.
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
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from crowdtune.training.models import load_model, resolve_device

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "LoraSequenceModel",
    "allocate_lengths",
    "bf16_autocast",
    "forward_logits",
    "loss_progress",
    "pad_batch",
    "quiet_peft",
    "special_affixes",
    "token_ids",
    "with_lora",
]

#: Version of the layout :meth:`LoraSequenceModel.save` writes.
_SAVE_FORMAT = 1
#: Models built here from a config, whose weights must be saved (nothing can reload them by name).
_LOCAL_MODELS = ("tiny",)


# ---------------------------------------------------------------------------------------------
# texts to token ids


def allocate_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """How many tokens of each part to keep so that together they fit in ``budget``.

    Parts shorter than an equal share keep all their tokens; the tokens they leave unused are
    shared equally among the longer parts ("water filling"), which are all cut to the same
    length. The result depends only on the lengths, not on the order of the parts, so a pair
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


def special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. Gemma's ``<bos>``)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    return [], []


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each whole text, without special tokens; special-token strings inside the
    texts (``<|im_end|>``, ``<bos>``...) are read as plain text.

    Texts are not cut here (the caller cuts them with :func:`allocate_lengths`), so the
    tokenizer's "longer than the maximum sequence length" warning, which does not apply, is off.
    """
    if not texts:
        return []
    encoded = tokenizer(
        list(texts), add_special_tokens=False, split_special_tokens=True, verbose=False
    )["input_ids"]
    return [list(e) for e in encoded]


# ---------------------------------------------------------------------------------------------
# batches


def pad_batch(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask of token-id rows, on ``device``.

    Right padding leaves a causal model's real tokens (and their positions) untouched; a
    sequence-classification head reads the last non-pad token.
    """
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids.to(device), attention_mask.to(device)


def bf16_autocast(device: torch.device, bf16: bool) -> Any:
    """A bf16 autocast context on ``device`` when ``bf16``, else a context that does nothing."""
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def forward_logits(
    model: Any, rows: list[list[int]], pad_id: int, device: torch.device, bf16: bool
) -> torch.Tensor:
    """The head's outputs of a batch of token-id rows, as float32 of shape (len(rows), n):
    the rows padded by :func:`pad_batch` and run under :func:`bf16_autocast`."""
    input_ids, attention_mask = pad_batch(rows, pad_id, device)
    with bf16_autocast(device, bf16):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits.float()


def _shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Row indices in batches, reshuffled every epoch, for ever."""
    import torch

    while True:
        permutation = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            yield permutation[start : start + batch_size]


# ---------------------------------------------------------------------------------------------
# PEFT and progress


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Hide two PEFT warnings that say nothing wrong here: GPT-2's Conv1D layers make PEFT set
    ``fan_in_fan_out`` itself, and PEFT still calls a method that transformers 5 renamed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def with_lora(base: Any, config: Any) -> Any:
    """``base`` wrapped by PEFT with a fresh adapter described by ``config`` (a ``LoraConfig``)."""
    from peft import get_peft_model

    with quiet_peft():
        return get_peft_model(base, config)


@contextlib.contextmanager
def loss_progress(enabled: bool, total: int, description: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar showing the loss when ``enabled``; yields the function that advances
    it by one step with that step's loss (a no-op when not enabled)."""
    if not enabled:
        yield lambda loss: None
        return
    from rich.progress import Progress

    with Progress(*Progress.get_default_columns(), "loss {task.fields[loss]}") as bar:
        task = bar.add_task(description, total=total, loss="-")
        yield lambda loss: bar.update(task, advance=1, loss=f"{loss:.4f}")


# ---------------------------------------------------------------------------------------------
# the estimator base


class LoraSequenceModel(BaseEstimator):
    """What every LoRA-on-a-language-model estimator shares: parameter checks, device and bf16
    resolution, the LoRA config, a fresh model with its adapter and a ``_num_labels``-output
    head, a forked RNG, the training loop, and :meth:`save` / :meth:`load`.

    Subclasses set ``_num_labels`` and define ``__init__`` with the parameters listed here (see
    :class:`~crowdtune.preference.transformer.TransformerPreferenceModel` for their meaning),
    ``fit`` and the prediction methods. A fitted estimator has ``model_``, ``tokenizer_``,
    ``device_``, ``bf16_`` and ``loss_history_``.
    """

    #: Outputs of the sequence-classification head.
    _num_labels: int

    model: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: str | list[str]
    max_length: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    epochs: int
    max_steps: int | None
    batch_size: int
    gradient_accumulation: int
    max_grad_norm: float
    gradient_checkpointing: bool
    random_state: int
    device: str
    bf16: str | bool
    verbose: bool

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
        return resolve_device(self.device, self.bf16)

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

        options: dict[str, Any] = {}
        if self.model == "tiny":
            options["n_positions"] = max(1024, int(self.max_length))
        return load_model(
            self.model,
            "sequence-classification",
            num_labels=self._num_labels,
            dtype=torch.bfloat16 if bf16 else None,
            seed=self.random_state,
            **options,
        )

    def _fresh_model(self, device: torch.device, bf16: bool) -> tuple[Any, Any]:
        """The base model with a fresh adapter, its trainable weights in fp32, on ``device``;
        and its tokenizer. Call it inside :meth:`_forked_rng` after seeding torch."""
        import torch

        base, tokenizer = self._base_model(bf16)
        if self.gradient_checkpointing:
            # Non-reentrant checkpointing needs no input gradients with a frozen base.
            base.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        model = with_lora(base, self._lora_config())
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                # Adapter and head train in fp32 (bf16 updates lose small steps).
                parameter.data = parameter.data.float()
        model.to(device)
        return model, tokenizer

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
        params = dict(manifest["params"])
        if "seed" in params:  # written before the seed was named random_state (same format)
            params["random_state"] = params.pop("seed")
        estimator = cls(**params)
        if device is not None:
            estimator.device = device
        resolved, bf16 = estimator._resolve_device()
        tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
        if manifest["base_embedded"]:
            config = AutoConfig.from_pretrained(directory / "base")
            with estimator._forked_rng(torch.device("cpu")):
                # Random init, overwritten below; the fork keeps the global RNG as it was.
                base = AutoModelForSequenceClassification.from_config(config)
            model = with_lora(base, PeftConfig.from_pretrained(str(directory / "adapter")))
            load_weights(model, str(directory / "base" / "model.safetensors"))
            if bf16:
                model.to(torch.bfloat16)
        else:
            base, _ = estimator._base_model(bf16)
            with quiet_peft():
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

    # -------------------------------------------------------------------------------- training

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
        order = torch.Generator().manual_seed(int(self.random_state))
        batches = _shuffled_batches(n_examples, int(self.batch_size), order)
        model.train()
        history: list[float] = []
        with loss_progress(self.verbose, total_steps, "training") as advance:
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
