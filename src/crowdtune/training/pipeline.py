"""The training pipeline end to end, in one call: SFT, a reward model, DPO from the SFT model, then
:func:`~crowdtune.training.assess.assess` of DPO against SFT on held-out prompts.

It runs what ``crowdtune train sft``, ``train reward``, ``train dpo`` and ``crowdtune assess`` run
one after another, quietly: the libraries' progress bars, the trainers' logs and their
known-harmless warnings stay off the console while it runs (see :func:`quiet_training`), and
torch works on one thread (on a shared machine more threads run far slower, see MODELS.md).
``crowdtune demo`` runs it on the tiny model with :data:`TINY_STAGES`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdtune.training.assess import AssessResult, assess
from crowdtune.training.stages import StageConfig, run_stage

#: Steps and learning rate of each stage that move a randomly initialised tiny model in seconds
#: (the methods' defaults are for pretrained models and would leave it where it started).
TINY_STAGES: dict[str, tuple[int, float]] = {
    "sft": (30, 1e-3),
    "reward": (30, 1e-3),
    "dpo": (20, 1e-4),
}


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` measured.

    Attributes
    ----------
    metrics
        Each stage's ``metrics.json`` (steps, first and last loss, seconds ...), by stage name.
    assessment
        DPO against SFT on the held-out prompts.
    seconds
        Wall time of the whole pipeline.
    """

    metrics: dict[str, dict[str, Any]]
    assessment: AssessResult
    seconds: float


class _DropMessages(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """Keep the training libraries' own output off the console meanwhile; restored afterwards.

    Off: the progress bars of ``datasets`` (one per map in each stage) and of ``transformers``
    (loading and writing weights), and three known-harmless messages. Two are FutureWarnings of
    transformers 5.25 about names TRL 1.16 still uses (its configs default the deprecated
    ``gradient_checkpointing``, its DPO trainer calls ``is_gradient_checkpointing``); the third is
    the tokenizer's note that a text is longer than the model's positions, logged when TRL
    tokenizes whole texts before it cuts them to ``max_length``.
    """
    # Deferred: datasets and transformers are heavy, and this module is imported with the package.
    import datasets
    from transformers.utils import logging as transformers_logging

    dataset_bars = datasets.is_progress_bar_enabled()
    model_bars = transformers_logging.is_progress_bar_enabled()
    too_long = _DropMessages("Token indices sequence length is longer than the specified maximum")
    tokenizer_log = logging.getLogger("transformers.tokenization_utils_base")
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    tokenizer_log.addFilter(too_long)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=re.escape("`gradient_checkpointing` is deprecated"),
                category=FutureWarning,
            )
            warnings.filterwarnings(
                "ignore",
                message=re.escape("`is_gradient_checkpointing` is deprecated"),
                category=FutureWarning,
            )
            yield
    finally:
        tokenizer_log.removeFilter(too_long)
        if model_bars:
            transformers_logging.enable_progress_bar()
        if dataset_bars:
            datasets.enable_progress_bars()


def run_pipeline(
    out: Path,
    *,
    data: str,
    prompts: str,
    model: str = "tiny",
    stages: Mapping[str, tuple[int, float]] = TINY_STAGES,
    rows: int = 200,
    max_length: int = 256,
    n_prompts: int = 64,
    max_new_tokens: int = 48,
    seed: int = 0,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> PipelineResult:
    """SFT, reward and DPO on ``data``, then DPO assessed against SFT on ``prompts``.

    Parameters
    ----------
    out
        Each stage writes to ``out/<stage>`` (``sft``, ``reward``, ``dpo``).
    data, prompts
        Sources of the training rows and of the held-out prompts, as the ``train`` and ``assess``
        commands take them (``@car`` and ``@car:test``, say); prompts any stage trained on are
        left out.
    model
        The model SFT and the reward model start from (DPO starts from ``out/sft``).
    stages
        Optimizer steps and learning rate of ``sft``, ``reward`` and ``dpo``.
    rows, max_length
        Training rows per stage (the first ``rows``, shuffled with ``seed``) and tokens per row.
    n_prompts, max_new_tokens
        Held-out prompts assessed, and new tokens per answer.
    on_stage
        Called with each stage's name and metrics as it finishes.
    """
    # Deferred: torch is heavy, and this module is imported with the package.
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    metrics: dict[str, dict[str, Any]] = {}
    try:
        with quiet_training():
            for stage, (steps, rate) in stages.items():
                config = StageConfig(
                    model=str(out / "sft") if stage == "dpo" else model, data=data,
                    out=out / stage, max_rows=rows, max_steps=steps, learning_rate=rate,
                    max_length=max_length, seed=seed, progress=False,
                )  # fmt: skip
                with contextlib.redirect_stdout(io.StringIO()):  # the trainers' logs
                    metrics[stage] = run_stage(stage, config).metrics
                if on_stage is not None:
                    on_stage(stage, metrics[stage])
            with contextlib.redirect_stdout(io.StringIO()):
                assessment = assess(
                    str(out / "sft"), str(out / "dpo"), prompts, out / "reward",
                    n_prompts=n_prompts, max_new_tokens=max_new_tokens, seed=seed,
                )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return PipelineResult(metrics, assessment, time.perf_counter() - started)
