"""The point-in-space experiment with real models: :func:`run_arms` wired to TRL (``run_sft`` with
a LoRA adapter per candidate, each adapter trained on top of the merged previous winner), batched
sampling with transformers and the default emotion classifier.

:func:`run_point_in_space` computes and returns the result; the trainings write their checkpoints
under the folder it is given (a model is its folder). Everything else it hands to a
:class:`Recorder` as it goes, and :mod:`crowdtune.crowd.point_in_space.files` writes that to disk.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from crowdtune.crowd.point_in_space.arms import (
    PROMPT,
    PointInSpaceConfig,
    Train,
    run_arms,
    target_distance_band,
    training_pool,
    training_seed,
    trainings_per_replicate,
)
from crowdtune.crowd.point_in_space.summary import summarize_point_in_space
from crowdtune.spaces.emotions import EmotionTarget, emotion_target, load_default, pool_scores
from crowdtune.training.generation import generate, on_inference_device
from crowdtune.training.stages import StageConfig, load_trained, run_sft


class TextSampler:
    """Sampled answers to one prompt from a model name or stage output folder
    (:func:`crowdtune.training.generation.generate`, top-k 50 at ``temperature``).

    The prompt goes through the tokenizer's chat template as one user message, as in training,
    where rows are conversational. The last few models stay loaded; each call is reproducible
    from its seed.
    """

    def __init__(
        self,
        prompt: str = PROMPT,
        max_new_tokens: int = 40,
        temperature: float = 1.0,
        batch_size: int = 32,
        load_seed: int = 0,
        keep: int = 3,
    ) -> None:
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size
        self.load_seed = load_seed
        self.keep = keep
        self._models: dict[str, tuple[Any, Any]] = {}

    def _load(self, name: str) -> tuple[Any, Any]:
        if name not in self._models:
            while len(self._models) >= self.keep:
                self._models.pop(next(iter(self._models)))
            model, tokenizer = load_trained(name, "causal-lm", seed=self.load_seed)
            self._models[name] = (on_inference_device(model), tokenizer)
        return self._models[name]

    def __call__(self, name: str, n: int, seed: int) -> list[str]:
        model, tokenizer = self._load(name)
        answers = generate(
            model,
            tokenizer,
            [self.prompt] * n,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            do_sample=True,
            seed=seed,
            chat_template=bool(getattr(tokenizer, "chat_template", None)),
            temperature=self.temperature,
        )
        return [answer.strip() for answer in answers]


def _sft_trainer(config: PointInSpaceConfig, folder: Path) -> Train:
    """``train`` backed by :func:`crowdtune.training.stages.run_sft`: conversational rows (the
    prompt as the user turn, a sentence as the answer), one output folder per model."""

    def train(base: str, texts: Sequence[str], seed: int, name: str) -> str:
        out = folder / name
        data = folder / f"{name}.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        with data.open("w", encoding="utf-8") as handle:
            for text in texts:
                row = {
                    "prompt": [{"role": "user", "content": PROMPT}],
                    "completion": [{"role": "assistant", "content": text}],
                }
                handle.write(json.dumps(row) + "\n")
        # The trainer prints its log dicts to stdout when its progress bar is off; keep stdout
        # for results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            run_sft(
                StageConfig(
                    model=base,
                    data=str(data),
                    out=out,
                    lora=config.lora,
                    max_steps=config.max_steps,
                    epochs=config.epochs,
                    learning_rate=config.learning_rate,
                    batch_size=config.batch_size,
                    eval_share=0.0,
                    seed=seed,
                    max_length=config.max_length,
                    logging_steps=max(1, config.max_steps or 10),
                    progress=False,
                )
            )
        return str(out)

    return train


class Recorder(Protocol):
    """Receives what a run produces as it goes (:class:`~crowdtune.crowd.point_in_space.files.
    PointInSpaceFiles` writes it), so a long run that is stopped keeps what it finished."""

    def target(self, info: dict[str, Any]) -> None:
        """The target, its sentence and the training pool, once, before any training."""

    def sample(self, record: dict[str, Any]) -> None:
        """One generated text: ``replicate``, ``model``, ``seed``, ``text``."""

    def replicate(self, table: pd.DataFrame) -> None:
        """The rows of every replicate finished so far."""


@dataclass
class PointInSpaceResult:
    """What :func:`run_point_in_space` measured.

    Attributes
    ----------
    config
        The experiment's settings.
    table
        One row per arm, generation, candidate and replicate (:func:`run_arms`).
    summary
        :func:`summarize_point_in_space` of the table.
    target
        The target (:meth:`EmotionTarget.to_dict`) with its top ``sentence``, the training
        ``pool_rows`` and their ``pool_distances`` to the centre.
    band
        :func:`target_distance_band` of the target.
    samples
        Every generated text with its replicate, model and seed, in the order drawn.
    seconds
        Wall time of the run.
    """

    config: PointInSpaceConfig
    table: pd.DataFrame
    summary: dict[str, Any]
    target: dict[str, Any]
    band: dict[str, float]
    samples: list[dict[str, Any]]
    seconds: float


def run_point_in_space(
    config: PointInSpaceConfig,
    models: Path | str,
    advance: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    recorder: Recorder | None = None,
) -> PointInSpaceResult:
    """Run the experiment with real models; the checkpoints go under ``models/``.

    Parameters
    ----------
    config
        The experiment's settings.
    models
        Folder of the trained models (``replicate-<i>/<name>``) and their training data.
    advance
        Called with the number of trainings done (:func:`trainings_per_replicate` per
        replicate in all), for a progress bar.
    log
        Receives one line per stage.
    recorder
        Receives the target, every sample and the table after each replicate as they come.
    """
    import torch  # only to restore its thread count; torch is loaded for training anyway

    started = time.perf_counter()
    models = Path(models)
    say = log or (lambda _line: None)
    say("scoring GoEmotions test (target) and train (pool) with the emotion classifier")
    test_texts, test_scores = pool_scores(split="test", progress=say)
    target: EmotionTarget = emotion_target(config.emotion, test_scores)
    train_texts, train_scores = pool_scores(split="train", progress=say)
    pool_rows = training_pool(train_scores, target.centre, config.pool_size)
    pool_texts = [train_texts[i] for i in pool_rows]
    band = target_distance_band(
        test_scores[target.indices], target.centre, config.n_samples, config.seed
    )
    say("loading the emotion classifier")
    classifier = load_default()
    target_info = {
        **target.to_dict(),
        "sentence": test_texts[target.top_index],
        "pool_rows": [int(i) for i in pool_rows],
        "pool_distances": [
            float(d) for d in np.linalg.norm(train_scores[pool_rows] - target.centre, axis=1)
        ],
    }
    if recorder is not None:
        recorder.target(target_info)
    samples: list[dict[str, Any]] = []

    def score(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(classifier.predict_proba(list(texts)), dtype=float)

    threads = torch.get_num_threads()
    tables = []
    try:
        for replicate in range(config.replicates):
            sampler = TextSampler(
                PROMPT,
                config.max_new_tokens,
                config.temperature,
                config.sample_batch_size,
                load_seed=training_seed(config, replicate),
            )

            def sample(
                model: str,
                n: int,
                seed: int,
                sampler: TextSampler = sampler,
                replicate: int = replicate,
            ) -> list[str]:
                texts = sampler(model, n, seed)
                for text in texts:
                    record = {"replicate": replicate, "model": model, "seed": seed, "text": text}
                    samples.append(record)
                    if recorder is not None:
                        recorder.sample(record)
                return texts

            say(f"replicate {replicate + 1}/{config.replicates}")
            done = [0]

            def step(k: int, done: list[int] = done) -> None:
                done[0] += k
                if advance is not None:
                    advance(k)

            train = _sft_trainer(config, models / f"replicate-{replicate}")
            rows = run_arms(
                config, pool_texts, target.centre, train, sample, score, replicate, step
            )
            tables.append(pd.DataFrame(rows))
            if recorder is not None:
                recorder.replicate(pd.concat(tables, ignore_index=True))
            if advance is not None:  # trainings the random arm shared with the competitive one
                advance(trainings_per_replicate(config) - done[0])
    finally:
        torch.set_num_threads(threads)
    table = pd.concat(tables, ignore_index=True)
    summary = summarize_point_in_space(table)
    seconds = time.perf_counter() - started
    return PointInSpaceResult(config, table, summary, target_info, band, samples, seconds)
