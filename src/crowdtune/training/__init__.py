"""Training language models on crowd feedback: the model factory (and, later, TRL stages).

:func:`load_model` is the one place a model is made: ``"tiny"`` builds a 2-layer GPT-2 from a
config with a byte-level BPE tokenizer trained on the spot (fast tests, no download); any other
name is passed to ``from_pretrained`` (a local directory, or a hub name for users with a hub).
torch and transformers are imported when a model is made, so importing this package is cheap.
"""

from crowdtune.training.models import (
    SPECIAL_TOKENS,
    TASKS,
    TINY_CHAT_TEMPLATE,
    load_model,
    tiny_config,
    tiny_tokenizer,
)

__all__ = [
    "SPECIAL_TOKENS",
    "TASKS",
    "TINY_CHAT_TEMPLATE",
    "load_model",
    "tiny_config",
    "tiny_tokenizer",
]
