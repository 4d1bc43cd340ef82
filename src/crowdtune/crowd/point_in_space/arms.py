"""The arms of the point-in-space experiment, written against three functions: its settings, the
training pool, the target band and one replicate of the three arms (see
:mod:`crowdtune.crowd.point_in_space`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The published prompt.
PROMPT = "write a reddit comment."
#: The three arms, in report order.
ARMS = ("single", "competitive", "random")
#: Bootstrap resamples of the per-row interval over generations.
BOOTSTRAP_RESAMPLES = 1000

Train = Callable[[str, Sequence[str], int, str], str]
Sample = Callable[[str, int, int], list[str]]
Score = Callable[[Sequence[str]], np.ndarray]


@dataclass
class PointInSpaceConfig:
    """Settings of one point-in-space experiment (defaults: the published schedule, with the
    generation budget small enough for a CPU).

    Parameters
    ----------
    emotion
        GoEmotions label whose target the models move toward.
    model
        Base model: ``"smollm2"``, ``"tiny"`` (tests), a checkpoint directory or hub name.
    k_single
        Training-set sizes of the single-model arm (published 33, 66, 100).
    generations
        Rounds of the competitive and random arms (published 3).
    candidates
        Candidates per round (published 3).
    subset_sizes
        Sentences per candidate in each round (published 33, 22, 15); ``candidates *
        subset_sizes[g]`` must fit in the pool of ``max(k_single)`` sentences.
    n_samples
        Generations per evaluation (selection and report each).
    max_new_tokens
        Tokens per generation.
    temperature
        Sampling temperature. The published runs used the API default (1.0) with a far larger
        model; at 1.0 SmolLM2-135M often drifts into noise within 30 tokens, so 0.7.
    replicates
        Independent replicates (seeds ``seed``, ``seed + 1``, ...).
    seed
        Seed of the first replicate.
    lora
        Train LoRA adapters (r 8) rather than every weight.
    max_steps
        Optimizer steps per training (None: ``epochs`` decides).
    epochs
        Passes over a training set when ``max_steps`` is None.
    learning_rate
        Learning rate of every training (2e-4 suits LoRA; TRL's SFT default 2e-5 barely moves
        an adapter in a few steps).
    batch_size
        Rows per optimizer step.
    max_length
        Tokens per training row (prompt and sentence).
    sample_batch_size
        Generations sampled in one batch.
    """

    emotion: str = "joy"
    model: str = "smollm2"
    k_single: tuple[int, ...] = (33, 66, 100)
    generations: int = 3
    candidates: int = 3
    subset_sizes: tuple[int, ...] = (33, 22, 15)
    n_samples: int = 20
    max_new_tokens: int = 40
    temperature: float = 0.7
    replicates: int = 1
    seed: int = 0
    lora: bool = True
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 128
    sample_batch_size: int = 32

    def __post_init__(self) -> None:
        self.k_single = tuple(int(k) for k in self.k_single)
        self.subset_sizes = tuple(int(s) for s in self.subset_sizes)
        for name in (
            "generations",
            "candidates",
            "n_samples",
            "max_new_tokens",
            "replicates",
            "batch_size",
            "max_length",
            "sample_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.k_single or min(self.k_single) < 1:
            raise ValueError(f"k_single must be positive sizes, got {self.k_single}")
        if len(self.subset_sizes) != self.generations:
            raise ValueError(
                f"subset_sizes needs one size per generation ({self.generations}), "
                f"got {self.subset_sizes}"
            )
        if min(self.subset_sizes) < 1:
            raise ValueError(f"subset_sizes must be positive, got {self.subset_sizes}")
        if self.candidates * max(self.subset_sizes) > self.pool_size:
            raise ValueError(
                f"{self.candidates} candidates x {max(self.subset_sizes)} sentences do not fit "
                f"in the training pool of max(k_single) = {self.pool_size} sentences"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def pool_size(self) -> int:
        """Training sentences nearest the target: the largest single-model ``k``."""
        return max(self.k_single)


# ------------------------------------------------------------------------------- pure pieces


def training_pool(train_scores: np.ndarray, centre: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` training sentences nearest ``centre`` (Euclidean), nearest first."""
    distances = np.linalg.norm(np.asarray(train_scores, dtype=float) - centre, axis=1)
    if not 1 <= k <= len(distances):
        raise ValueError(f"k must be in [1, {len(distances)}], got {k}")
    return np.argsort(distances, kind="stable")[:k]


def _distance_with_ci(scores: np.ndarray, centre: np.ndarray, seed: int) -> tuple[float, ...]:
    """Distance of the mean point to ``centre`` and a 95 % percentile bootstrap interval over
    the generations."""
    scores = np.asarray(scores, dtype=float)
    distance = float(np.linalg.norm(scores.mean(axis=0) - centre))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(scores), size=(BOOTSTRAP_RESAMPLES, len(scores)))
    boot = np.linalg.norm(scores[draws].mean(axis=1) - centre, axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return distance, float(low), float(high)


def target_distance_band(
    target_scores: np.ndarray, centre: np.ndarray, n_samples: int, seed: int = 0
) -> dict[str, float]:
    """The 25 %, 50 % and 75 % quantiles of the distance to ``centre`` of the mean of
    ``n_samples`` target sentences drawn with replacement (2,000 draws): where a model that
    writes like the target lands with ``n_samples`` generations."""
    scores = np.asarray(target_scores, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(2000, n_samples))
    distances = np.linalg.norm(scores[draws].mean(axis=1) - centre, axis=1)
    low, median, high = np.percentile(distances, [25, 50, 75])
    return {"low": float(low), "median": float(median), "high": float(high)}


def _seed(*parts: int) -> int:
    """A 32-bit seed from integer parts (``SeedSequence`` mixes them)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


# Streams of sampling seeds, so selection and report generations never share a seed.
_SELECT, _REPORT, _TRAIN, _PARTITION, _PICK = 1, 2, 3, 4, 5


def training_seed(config: PointInSpaceConfig, replicate: int) -> int:
    """The seed of every training of a replicate (and of loading its models to sample)."""
    return _seed(config.seed + replicate, _TRAIN)


def run_arms(
    config: PointInSpaceConfig,
    pool_texts: Sequence[str],
    centre: np.ndarray,
    train: Train,
    sample: Sample,
    score: Score,
    replicate: int = 0,
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One replicate of the three arms; one row per (arm, generation) and, for the competitive
    and random arms, one row per candidate.

    Parameters
    ----------
    config
        The experiment's settings.
    pool_texts
        Training sentences, nearest the target first (``config.pool_size`` of them).
    centre
        ``(28,)`` target centre.
    train
        ``train(base, texts, seed, name) -> model``: fine-tune ``base`` on ``texts``.
    sample
        ``sample(model, n, seed) -> texts``: ``n`` generations, reproducible from ``seed``.
    score
        ``score(texts) -> (n, 28)`` emotion scores.
    replicate
        Replicate number; with ``config.seed`` it decides every seed.
    advance
        Called with 1 after each training (progress).

    Returns
    -------
    list of dict
        Rows with ``replicate``, ``arm``, ``generation`` (0: the base model), ``role``
        (``base``, ``winner`` or ``candidate``), ``candidate``, ``k`` (training sentences of
        this model), ``model``, ``distance`` with ``ci_low``/``ci_high`` (fresh report
        generations; NaN for candidates that did not win), ``selection_distance`` (the
        selection generations; competitive candidates), ``sample_seed`` and
        ``selection_seed``.
    """
    if len(pool_texts) < config.pool_size:
        raise ValueError(f"the training pool has {len(pool_texts)} texts, need {config.pool_size}")
    base_seed = config.seed + replicate
    train_seed = training_seed(config, replicate)
    trained: dict[tuple[str, tuple[int, ...]], str] = {}
    measured: dict[tuple[str, int], tuple[float, ...]] = {}

    def fit(base: str, rows: Sequence[int] | np.ndarray, name: str) -> str:
        key = (base, tuple(int(i) for i in rows))
        if key not in trained:  # the random arm reuses the candidates of a shared lineage
            trained[key] = train(base, [pool_texts[i] for i in rows], train_seed, name)
            if advance is not None:
                advance(1)
        return trained[key]

    def measure(model: str, seed: int) -> tuple[float, ...]:
        if (model, seed) not in measured:
            texts = sample(model, config.n_samples, seed)
            measured[model, seed] = _distance_with_ci(score(texts), centre, seed)
        return measured[model, seed]

    def report_seed(generation: int) -> int:
        return _seed(base_seed, _REPORT, generation)

    rows: list[dict[str, Any]] = []

    def add(arm: str, generation: int, role: str, model: str, k: int, **extra: Any) -> None:
        row: dict[str, Any] = {
            "replicate": replicate,
            "arm": arm,
            "generation": generation,
            "role": role,
            "candidate": -1,
            "k": k,
            "model": model,
            "distance": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "selection_distance": np.nan,
            "sample_seed": -1,
            "selection_seed": -1,
        }
        if role != "candidate":
            seed = report_seed(generation)
            row["distance"], row["ci_low"], row["ci_high"] = measure(model, seed)
            row["sample_seed"] = seed
        row.update(extra)
        rows.append(row)

    base = config.model
    for arm in ARMS:
        add(arm, 0, "base", base, 0)

    for generation, k in enumerate(config.k_single, start=1):
        add("single", generation, "winner", fit(base, range(k), f"single-k{k}"), k)

    partition_rng = np.random.default_rng(_seed(base_seed, _PARTITION))
    pick_rng = np.random.default_rng(_seed(base_seed, _PICK))
    parents = {"competitive": base, "random": base}
    seen = {"competitive": 0, "random": 0}
    for generation, size in enumerate(config.subset_sizes, start=1):
        # One partition per round, shared by both arms (common random numbers).
        order = partition_rng.permutation(config.pool_size)
        subsets = [order[c * size : (c + 1) * size] for c in range(config.candidates)]
        random_pick = int(pick_rng.integers(config.candidates))
        for arm in ("competitive", "random"):
            parent = parents[arm]
            models = [
                fit(parent, subset, f"{arm}-g{generation}-c{c}") for c, subset in enumerate(subsets)
            ]
            select_seed = _seed(base_seed, _SELECT, generation)
            if arm == "competitive":
                selection = [measure(m, select_seed)[0] for m in models]
                winner = int(np.argmin(selection))
            else:
                selection = [np.nan] * len(models)
                winner = random_pick
            for c, model in enumerate(models):
                add(
                    arm,
                    generation,
                    "candidate",
                    model,
                    seen[arm] + size,
                    candidate=c,
                    selection_distance=selection[c],
                    selection_seed=select_seed if arm == "competitive" else -1,
                )
            add(
                arm,
                generation,
                "winner",
                models[winner],
                seen[arm] + size,
                candidate=winner,
                selection_distance=selection[winner],
                selection_seed=select_seed if arm == "competitive" else -1,
            )
            parents[arm] = models[winner]
            seen[arm] += size
    return rows


def trainings_per_replicate(config: PointInSpaceConfig) -> int:
    """Trainings of one replicate at most (the random arm shares round 1, and later rounds
    whenever its random winner is the competitive one)."""
    return len(config.k_single) + config.candidates * (2 * config.generations - 1)
