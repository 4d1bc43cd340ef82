"""The point-in-space experiment with real language models: single-model SFT against competitive
selection, and the ablation that separates selection from sequential training.

The published Crowd-SFT experiment fine-tuned gpt-3.5-turbo toward an emotion target. A model's
*point* is the mean 28-dimensional GoEmotions score vector of its generations for the prompt
"write a reddit comment." (:func:`crowdtune.spaces.emotions.emotion_point`); the *target* is the
GoEmotions test sentence scoring highest on the emotion plus its 100 nearest neighbours
(:func:`crowdtune.spaces.emotions.emotion_target`). It reported a mean distance over 28 emotions
of 0.609 for single-model training against 0.448 for competitive selection, from one run per
emotion, with the winner scored on the generations that picked it. Here, per replicate:

``single``
    SFT of the base model on the ``k`` training sentences nearest the target centre, for each
    ``k`` of ``k_single`` (published 33, 66, 100). Plotted at generation ``i`` for the ``i``-th
    ``k``.
``competitive``
    ``generations`` rounds (published 3). In round ``g``, ``candidates`` LoRA candidates (3)
    start from the previous winner (round 1: the base model) and train on disjoint random
    subsets of the training pool of ``subset_sizes[g]`` sentences each (33, 22, 15); each
    candidate samples ``n_samples`` *selection* generations and the one whose point lies
    nearest the centre wins. The winner is reported on ``n_samples`` *fresh* generations drawn
    with other seeds, so the reported distance is not biased by the selection; the selection
    distance of the winner is kept too (``selection_distance``) to show that bias.
``random``
    The ablation: the same schedule (the same subsets, seeds and candidates while the lineage is
    the same), but the winner is drawn at random. Competitive minus random is the effect of
    selection; random minus single is the effect of sequential training on fresh subsets.

The *training pool* is the ``max(k_single)`` GoEmotions **train** sentences nearest the target
centre (Euclidean in score space), scored by the same classifier; the target itself comes from
the test split, so no training sentence is a target member. Each round draws a fresh random
partition of that pool, so competitive and random candidates see the same total data as
``single`` at its largest ``k``.

Every distance is the Euclidean distance of a model's point to the target centre; each row also
carries a 95 % bootstrap interval over its ``n_samples`` generations (the sampling noise of one
model). Across replicates, :func:`summarize_point_in_space` gives Student-t 95 % intervals of the
mean (:func:`crowdtune.stats.mean_ci`) and of the paired differences between arms.

The *target band* on a distance plot (:func:`target_distance_band`): the 25-75 % range of the
distance to the centre of the mean point of ``n_samples`` sentences drawn from the 101 target
sentences, i.e. where a model that wrote exactly like the target would land with the same
number of generations. (The per-emotion 25-75 % band of the target is in ``target.json``.)

The experiment is written against three functions, so its logic is tested exactly with fakes:
``train(base, texts, seed, name) -> model``, ``sample(model, n, seed) -> texts`` and
``score(texts) -> (n, 28)``. :func:`run_point_in_space` wires them to TRL (``run_sft`` with a
LoRA adapter per candidate, each adapter trained on top of the merged previous winner), batched
sampling with transformers and the default emotion classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crowdtune.stats import mean_ci

if TYPE_CHECKING:
    from crowdtune.spaces.emotions import EmotionTarget

__all__ = [
    "ARMS",
    "PROMPT",
    "PointInSpaceConfig",
    "PointInSpaceResult",
    "TextSampler",
    "run_arms",
    "finished_run",
    "run_point_in_space",
    "summarize_emotions",
    "summarize_point_in_space",
    "target_distance_band",
    "training_pool",
    "trainings_per_replicate",
]

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
    train_seed = _seed(base_seed, _TRAIN)
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


def summarize_point_in_space(table: pd.DataFrame) -> dict[str, Any]:
    """Mean reported distance per arm and generation with Student-t 95 % intervals over
    replicates, the paired differences competitive − random and competitive − single, and the
    selection bias of the competitive winner (selection minus fresh distance)."""
    winners = table[table["role"].isin(["base", "winner"])]
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        rows = winners[winners["arm"] == arm]
        by_arm[arm] = [
            {
                "generation": int(g),
                "k": int(rows.loc[rows["generation"] == g, "k"].to_numpy()[0]),
                **mean_ci(rows.loc[rows["generation"] == g, "distance"]),
            }
            for g in sorted(rows["generation"].unique())
        ]
    pivot = winners.pivot_table(
        index=["replicate", "generation"], columns="arm", values="distance"
    ).reset_index()
    differences: dict[str, list[dict[str, Any]]] = {}
    for name, (a, b) in {
        "competitive_minus_random": ("competitive", "random"),
        "competitive_minus_single": ("competitive", "single"),
        "random_minus_single": ("random", "single"),
    }.items():
        if a not in pivot or b not in pivot:
            continue
        later = pivot[pivot["generation"] > 0]
        differences[name] = [
            {
                "generation": int(g),
                **mean_ci(
                    later.loc[later["generation"] == g, a] - later.loc[later["generation"] == g, b]
                ),
            }
            for g in sorted(later["generation"].unique())
        ]
    competitive = winners[(winners["arm"] == "competitive") & (winners["generation"] > 0)]
    bias = competitive["selection_distance"] - competitive["distance"]
    return {
        "replicates": int(table["replicate"].nunique()),
        "arms": by_arm,
        "differences": differences,
        "selection_bias": mean_ci(bias),
    }


def summarize_emotions(tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The published comparison across emotions: each arm's distance at its last generation
    (and the base model's), averaged over each emotion's replicates, then the mean over
    emotions with a Student-t 95 % interval that treats emotions as the units (the published
    figure is a mean over 28 emotions, one run each: single 0.609, competitive 0.448). The
    differences between arms are taken within each emotion first, so they are paired.

    Parameters
    ----------
    tables
        Emotion name to its ``results.csv`` table (:func:`run_arms` rows, any replicates).
    """
    if not tables:
        raise ValueError("no emotions to summarise")
    per_emotion: dict[str, dict[str, float]] = {}
    for emotion, table in tables.items():
        reported = table[table["role"].isin(["base", "winner"])]
        finals = {"base": float(reported.loc[reported["generation"] == 0, "distance"].mean())}
        for arm in ARMS:
            rows = reported[reported["arm"] == arm]
            finals[arm] = float(
                rows.loc[rows["generation"] == rows["generation"].max(), "distance"].mean()
            )
        per_emotion[emotion] = finals
    frame = pd.DataFrame(per_emotion).T
    pairs = {
        "competitive_minus_single": ("competitive", "single"),
        "competitive_minus_random": ("competitive", "random"),
        "random_minus_single": ("random", "single"),
    }
    return {
        "emotions": list(per_emotion),
        "replicates": {e: int(t["replicate"].nunique()) for e, t in tables.items()},
        "per_emotion": per_emotion,
        "final": {column: mean_ci(frame[column]) for column in ("base", *ARMS)},
        "differences": {name: mean_ci(frame[a] - frame[b]) for name, (a, b) in pairs.items()},
    }


def finished_run(folder: Path | str, config: PointInSpaceConfig) -> pd.DataFrame | None:
    """The results table of a run already finished in ``folder`` with exactly ``config``'s
    settings (its ``results.json`` says so), else None: a stopped sweep resumes there."""
    folder = Path(folder)
    try:
        written = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        table = pd.read_csv(folder / "results.csv")
    except (OSError, ValueError):
        return None
    expected = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON has them
    if written.get("config") != expected or "replicate" not in table:
        return None
    if table["replicate"].nunique() != config.replicates:
        return None
    return table


# ------------------------------------------------------------------------------ real models


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
        from crowdtune.training.generation import on_inference_device
        from crowdtune.training.stages import load_trained

        if name not in self._models:
            while len(self._models) >= self.keep:
                self._models.pop(next(iter(self._models)))
            model, tokenizer = load_trained(name, "causal-lm", seed=self.load_seed)
            self._models[name] = (on_inference_device(model), tokenizer)
        return self._models[name]

    def __call__(self, name: str, n: int, seed: int) -> list[str]:
        from crowdtune.training.generation import generate

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
    from crowdtune.training.stages import StageConfig, run_sft

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


@dataclass
class PointInSpaceResult:
    """What :func:`run_point_in_space` measured and wrote."""

    table: pd.DataFrame
    summary: dict[str, Any]
    target: dict[str, Any]
    band: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)


def run_point_in_space(
    config: PointInSpaceConfig,
    out: Path | str,
    advance: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PointInSpaceResult:
    """Run the experiment with real models and write ``out/``: ``results.csv`` (one row per arm,
    generation, candidate and replicate), ``results.json`` (config, target, band, summary,
    seconds), ``target.json``, ``samples.jsonl`` (every generated text with its seed) and the
    checkpoints under ``out/models/``.

    Parameters
    ----------
    config
        The experiment's settings.
    out
        Output folder.
    advance
        Called with the number of trainings done (:func:`trainings_per_replicate` per
        replicate in all), for a progress bar.
    log
        Receives one line per stage.
    """
    import torch

    from crowdtune.spaces.emotions import emotion_target, load_default, pool_scores

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
    (out / "target.json").write_text(json.dumps(target_info, indent=2) + "\n", encoding="utf-8")

    samples_path = out / "samples.jsonl"
    samples_file = samples_path.open("w", encoding="utf-8")

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
                load_seed=_seed(config.seed + replicate, _TRAIN),
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
                    samples_file.write(json.dumps(record) + "\n")
                return texts

            say(f"replicate {replicate + 1}/{config.replicates}")
            done = [0]

            def step(k: int, done: list[int] = done) -> None:
                done[0] += k
                if advance is not None:
                    advance(k)

            train = _sft_trainer(config, out / "models" / f"replicate-{replicate}")
            rows = run_arms(
                config, pool_texts, target.centre, train, sample, score, replicate, step
            )
            tables.append(pd.DataFrame(rows))
            # Write what is done so far: a long run that is stopped keeps its replicates.
            pd.concat(tables, ignore_index=True).to_csv(out / "results.csv", index=False)
            if advance is not None:  # trainings the random arm shared with the competitive one
                advance(trainings_per_replicate(config) - done[0])
    finally:
        samples_file.close()
        torch.set_num_threads(threads)
    table = pd.concat(tables, ignore_index=True)
    summary = summarize_point_in_space(table)
    seconds = time.perf_counter() - started
    paths = {"csv": out / "results.csv", "json": out / "results.json", "samples": samples_path}
    table.to_csv(paths["csv"], index=False)
    payload = {
        "config": dataclasses.asdict(config),
        "prompt": PROMPT,
        "target": {k: target_info[k] for k in ("emotion", "sentence", "centre", "low", "high")},
        "band": band,
        "summary": summary,
        "seconds": round(seconds, 1),
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=_json) + "\n", encoding="utf-8")
    return PointInSpaceResult(table, summary, target_info, band, paths)


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
