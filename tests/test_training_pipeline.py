"""The pipeline in one call keeps the training libraries' known noise off the console, and only
while it runs (the pipeline itself runs end to end in ``crowdtune demo``'s test)."""

import logging
import warnings

import datasets
from transformers.utils import logging as transformers_logging

from crowdtune.training.pipeline import quiet_training


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_quiet_training_drops_known_noise_only_and_restores_the_bars():
    tokenizer_log = logging.getLogger("transformers.tokenization_utils_base")
    handler = Records()
    tokenizer_log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_training():
                assert not datasets.is_progress_bar_enabled()
                assert not transformers_logging.is_progress_bar_enabled()
                for old in ("gradient_checkpointing", "is_gradient_checkpointing"):
                    warnings.warn(f"`{old}` is deprecated", FutureWarning, stacklevel=1)
                warnings.warn("`other` is deprecated", FutureWarning, stacklevel=1)
                tokenizer_log.warning(
                    "Token indices sequence length is longer than the specified maximum sequence "
                    "length for this model (1276 > 1024)."
                )
                tokenizer_log.warning("another tokenizer note")
            tokenizer_log.warning(
                "Token indices sequence length is longer than the specified maximum (after)"
            )
    finally:
        tokenizer_log.removeHandler(handler)
    assert [str(w.message) for w in caught] == ["`other` is deprecated"]
    assert handler.messages == [
        "another tokenizer note",
        "Token indices sequence length is longer than the specified maximum (after)",
    ]
    assert datasets.is_progress_bar_enabled()
    assert transformers_logging.is_progress_bar_enabled()
