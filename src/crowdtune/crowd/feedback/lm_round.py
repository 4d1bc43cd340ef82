"""One Crowd-SFT round on a language model: each group's feedback fine-tunes a candidate from the
current base, the candidates compete on gold items, the winner may become the next base.

This is :mod:`crowdtune.crowd.feedback.round` with language models in place of preference
models, and the steps are the same:

1. Feedback on **gold items** is never trained on (for ``sft``: revisions of a gold item's
   ``(prompt, original)``; for ``dpo``: votes on a gold prompt). Everyone with other feedback is
   a contributor of the round.
2. The grouping strategy (:func:`crowdtune.crowd.grouping.group_round`) splits them into
   ``n_groups`` groups, using the points of earlier rounds.
3. Each group's rows are written as JSONL into ``out/group-<g>/train.jsonl`` and train a
   candidate from the base with :func:`~crowdtune.training.run_sft` (revisions: prompt → revised
   answer) or :func:`~crowdtune.training.run_dpo` (votes: winner over loser; ties dropped), a
   LoRA adapter by default, all groups with the same seed so that only their data differ. The
   rows are conversations (one user message, one assistant message) when the base's tokenizer
   has a chat template, as an instruct model is used, else plain strings.
4. Every candidate and the base are evaluated on the gold items
   (:mod:`crowdtune.crowd.feedback.lm_evaluation`): ``sft`` by the mean per-token NLL of the
   reference revisions, ``dpo`` by the preference accuracy of the implicit reward; with a
   ``reward_model``, also by the reward model's win rate against the base's answers to the gold
   prompts (:mod:`crowdtune.crowd.feedback.lm_reward`). The best candidate wins (by the gold
   metric, or by the win rate with ``select_by="reward"``; ``selection="random"``: a random
   one, the ablation); the round **improved** when the winner beats the base (with
   ``select_by="reward"``: its win rate is above 0.5), and only then does the winner become
   ``model_after``.
5. The point scheme pays the contributors (:mod:`crowdtune.crowd.feedback.lm_credit`), in the
   evaluation's units (nats for ``sft``, accuracy for ``dpo``, win rate minus 0.5 with
   ``select_by="reward"``) except ``rank``.

Every candidate folder's ``metrics.json`` (written by the stage) gains ``provenance`` (round,
parent, group, members, the sha256 of its training JSONL, seed, settings) and ``evaluation``.
A later round starts from ``model_after``: :func:`~crowdtune.training.load_trained` follows the
chain of adapters back to the first base.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.crowd.feedback.credit import outcome_points
from crowdtune.crowd.feedback.lm_credit import leave_one_out_points, regression_points
from crowdtune.crowd.feedback.lm_evaluation import ModelCandidate, RoundData, prepare_round_data
from crowdtune.crowd.feedback.lm_reward import SELECT_BY, check_reward_model, round_evaluation
from crowdtune.crowd.feedback.weights import VOTE_WEIGHTS, annotator_weights
from crowdtune.crowd.grouping import STRATEGIES, group_round
from crowdtune.tables import jsonable
from crowdtune.training.stages import METRICS_FILE, StageConfig, load_trained, run_dpo, run_sft
from crowdtune.validation import check_choice

__all__ = [
    "CANDIDATES",
    "LORA_LEARNING_RATES",
    "MODEL_ROUND_SCHEMES",
    "SELECTIONS",
    "ModelCandidate",
    "ModelContributor",
    "ModelRound",
    "ModelRoundSettings",
    "run_model_round",
]

#: What a group's feedback trains: ``sft`` on revisions, ``dpo`` on votes.
CANDIDATES = ("sft", "dpo")
#: How contributors earn points (see :mod:`crowdtune.crowd.feedback.lm_credit`).
MODEL_ROUND_SCHEMES = ("rank", "marginal", "leave-one-out", "regression")
#: How the winner is chosen: the best score, or at random (the ablation).
SELECTIONS = ("best", "random")
#: Learning rates of LoRA training when none is given. A candidate trains for tens of steps on a
#: group's few rows, and LoRA's low-rank update needs a rate about ten times that of full
#: fine-tuning to move in so few steps: 2e-4 is the QLoRA paper's rate for models up to 13B
#: (TRL's full-SFT default is 2e-5); DPO's usual 5e-6 (Zephyr) is raised by the same factor.
#: Full fine-tuning (``lora=False``) keeps TRL's defaults.
LORA_LEARNING_RATES = {"sft": 2e-4, "dpo": 5e-5}
#: The file of training rows in each candidate folder.
TRAINING_FILE = "train.jsonl"


@dataclass
class ModelRoundSettings:
    """Settings of one round of language-model candidates.

    Parameters
    ----------
    candidate : {"sft", "dpo"}
        Fine-tune on revisions (``sft``) or on votes (``dpo``).
    strategy : {"random", "epsilon-greedy", "interleaved"}
        How contributors are grouped (:mod:`crowdtune.crowd.grouping`).
    scheme : {"rank", "marginal", "leave-one-out", "regression"}
        How contributors earn points (:mod:`crowdtune.crowd.feedback.lm_credit`).
    n_groups : int
        Groups, one candidate each.
    seed : int, optional
        Seed of grouping, training and selection; None draws one, which the round records.
    max_steps : int, optional
        Optimizer steps per training (None: ``epochs`` decides).
    epochs : float
        Passes over a group's rows when ``max_steps`` is None.
    learning_rate : float, optional
        None: :data:`LORA_LEARNING_RATES` with LoRA, TRL's default without.
    batch_size : int
        Rows per step (and per evaluation forward pass).
    lora : bool
        Train LoRA adapters (small folders that chain) instead of every weight.
    max_length : int
        Tokens per row, prompt included, in training and evaluation.
    loo_budget : int
        Extra trainings at most for ``leave-one-out``; members past it get no points (None)
        and a reason.
    n_bootstrap : int
        Bootstrap draws of the confidence intervals.
    selection : {"best", "random"}
        ``random`` picks a uniformly drawn candidate as the winner (the random-winner ablation).
    horizon : int
        Rounds over which epsilon-greedy's exploration decays (a project has no fixed number).
    reward_model : str, optional
        A folder :func:`~crowdtune.training.run_reward` wrote, on the machine that runs the
        round: every evaluation also carries its win rate against the base
        (:mod:`crowdtune.crowd.feedback.lm_reward`). Checked at the start of the round.
    max_new_tokens : int
        New tokens per answer the reward model judges.
    select_by : {"gold", "reward"}
        What the winner is chosen by: the gold metric, or (with a ``reward_model``) the reward
        win rate; then the round improves when the winner's win rate is above 0.5, and gains
        are win rates minus 0.5.
    vote_weights : {"none", "dawid-skene"}
        ``dpo`` only: ``dawid-skene`` fits Dawid–Skene on all the votes and drops the votes of
        annotators whose reliability weight is 0, i.e. whose accuracy is at or below chance
        (:mod:`crowdtune.crowd.feedback.weights`; TRL's DPO trainer takes no per-example
        weight). The round records the weights (``annotator_weights``).
    """

    candidate: str = "sft"
    strategy: str = "random"
    scheme: str = "rank"
    n_groups: int = 4
    seed: int | None = None
    max_steps: int | None = 20
    epochs: float = 1.0
    learning_rate: float | None = None
    batch_size: int = 4
    lora: bool = True
    max_length: int = 512
    loo_budget: int = 8
    n_bootstrap: int = 2000
    selection: str = "best"
    horizon: int = 10
    reward_model: str | None = None
    max_new_tokens: int = 64
    select_by: str = "gold"
    vote_weights: str = "none"

    def __post_init__(self) -> None:
        check_choice(self.candidate, CANDIDATES, "candidate kind")
        check_choice(self.vote_weights, VOTE_WEIGHTS, "vote weights")
        if self.candidate == "sft" and self.vote_weights != "none":
            raise ValueError(
                f"vote_weights {self.vote_weights!r} weighs votes: it is for dpo rounds, and an "
                "sft round trains on revisions"
            )
        check_choice(self.strategy, STRATEGIES, "strategy")
        check_choice(self.scheme, MODEL_ROUND_SCHEMES, "point scheme")
        check_choice(self.selection, SELECTIONS, "selection")
        check_choice(self.select_by, SELECT_BY, "select_by")
        for name, low in (
            ("n_groups", 1),
            ("batch_size", 1),
            ("max_length", 8),
            ("loo_budget", 0),
            ("n_bootstrap", 100),
            ("horizon", 1),
            ("max_new_tokens", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
            or self.max_steps < 1
        ):  # fmt: skip
            raise ValueError(
                f"max_steps must be a positive integer or None, got {self.max_steps!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer or None, got {self.seed!r}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be positive, got {self.epochs!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive or None, got {self.learning_rate!r}")
        if not isinstance(self.lora, bool):
            raise ValueError(f"lora must be true or false, got {self.lora!r}")
        if self.reward_model is not None and (
            not isinstance(self.reward_model, str) or not self.reward_model.strip()
        ):
            raise ValueError(f"reward_model must be a folder or None, got {self.reward_model!r}")
        if self.select_by == "reward" and self.reward_model is None:
            raise ValueError('select_by="reward" needs a reward_model')

    def resolved_learning_rate(self) -> float | None:
        """The rate the trainings use (None: the stage's own default, without LoRA)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATES[self.candidate] if self.lora else None


@dataclass(frozen=True)
class ModelContributor:
    """A contributor's group, training rows and points this round (None with a ``reason``)."""

    contributor: str
    group: int
    rows: int
    points: float | None
    reason: str | None = None


@dataclass(frozen=True)
class ModelRound:
    """The outcome of :func:`run_model_round`; groups are numbered from 1.

    ``training_seed`` is the seed every training of the round used (drawn from ``seed``); the
    built-in ``"tiny"`` base is rebuilt from it (``load_trained(base, seed=training_seed)``).
    """

    round_number: int
    settings: ModelRoundSettings
    base: str
    base_evaluation: dict[str, Any]
    candidates: list[ModelCandidate]
    contributors: list[ModelContributor]
    winner: int | None
    improved: bool
    model_after: str
    extra_fits: int
    n_gold: int
    n_feedback_rows: int
    n_training_rows: int
    n_gold_rows_excluded: int
    skipped: list[str] = field(default_factory=list)
    training_seed: int = 0
    seconds: float = 0.0
    annotator_weights: dict[str, float] | None = None

    @property
    def points(self) -> dict[str, float]:
        """Points this round per contributor (None counts 0)."""
        return {c.contributor: float(c.points or 0.0) for c in self.contributors}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: everything needed to show, repeat or continue from the round."""
        settings = dataclasses.asdict(self.settings)
        out = {
            "round_number": self.round_number,
            **{
                k: settings[k]
                for k in ("candidate", "strategy", "scheme", "n_groups", "seed", "selection")
            },
            "settings": settings,
            "base": self.base,
            "base_evaluation": self.base_evaluation,
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
            "winner": self.winner,
            "improved": self.improved,
            "model_after": self.model_after,
            "contributors": [dataclasses.asdict(c) for c in self.contributors],
            "skipped": self.skipped,
            "extra_fits": self.extra_fits,
            "training_seed": self.training_seed,
            "n_gold": self.n_gold,
            "n_feedback_rows": self.n_feedback_rows,
            "n_training_rows": self.n_training_rows,
            "n_gold_rows_excluded": self.n_gold_rows_excluded,
            "seconds": self.seconds,
            "annotator_weights": self.annotator_weights,
        }
        return jsonable(out)


class _Progress:
    """The round's progress as a fraction of its units of work (the base's evaluation, then one
    unit per training with its evaluation), reported to the caller's ``progress``."""

    def __init__(self, report: Callable[[float, str], None] | None, total: int) -> None:
        self.report, self.total, self.done, self.within = report, max(1, total), 0, 0.0

    def tell(self, within: float, message: str) -> None:
        self.within = within
        if self.report is not None:
            fraction = min(1.0, (self.done + min(1.0, within)) / self.total)
            self.report(fraction, message)

    def note(self, message: str) -> None:
        """A new message at the same fraction (work inside a unit that counts no steps)."""
        self.tell(self.within, message)

    def finish_unit(self, message: str) -> None:
        self.done += 1
        self.tell(0.0, message)

    def step_callback(self, label: str) -> Any:
        """A ``TrainerCallback`` that reports every optimizer step of one training."""
        from transformers import TrainerCallback

        progress = self

        class StepProgress(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                steps = max(1, int(state.max_steps or 1))
                progress.tell(
                    state.global_step / steps, f"{label}: step {state.global_step}/{steps}"
                )

        return StepProgress()


@dataclass
class _Trainer:
    """Trains one candidate from the round's base on some rows, writes provenance."""

    data: RoundData
    base: str
    settings: ModelRoundSettings
    seed: int
    round_number: int
    callbacks: Sequence[Any]
    progress: _Progress

    def train(self, rows: list[dict[str, Any]], folder: Path, label: str) -> tuple[Path, str]:
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        data_file = folder / TRAINING_FILE
        data_file.write_text(text, encoding="utf-8")
        config = StageConfig(
            model=self.base,
            data=str(data_file),
            out=folder,
            lora=self.settings.lora,
            max_steps=self.settings.max_steps,
            epochs=self.settings.epochs,
            learning_rate=self.settings.resolved_learning_rate(),
            batch_size=self.settings.batch_size,
            eval_share=0.0,
            seed=self.seed,
            max_length=self.settings.max_length,
            progress=False,
            callbacks=[*self.callbacks, self.progress.step_callback(label)],
        )
        (run_sft if self.settings.candidate == "sft" else run_dpo)(config)
        return folder, hashlib.sha256(text.encode("utf-8")).hexdigest()

    def finish(self, message: str) -> None:
        self.progress.finish_unit(message)

    def record(
        self,
        folder: Path,
        *,
        group: int,
        members: Sequence[str],
        data_hash: str,
        evaluation: Mapping[str, Any],
        left_out: str | None = None,
    ) -> None:
        """Add provenance and the gold evaluation to the ``metrics.json`` the stage wrote."""
        path = folder / METRICS_FILE
        metrics = json.loads(path.read_text(encoding="utf-8"))
        metrics["provenance"] = {
            "round": self.round_number,
            "parent": self.base,
            "group": group,
            "members": list(members),
            "data_hash": data_hash,
            "seed": self.seed,
            "settings": dataclasses.asdict(self.settings),
            **({"left_out": left_out} if left_out is not None else {}),
        }
        metrics["evaluation"] = dict(evaluation)
        path.write_text(json.dumps(jsonable(metrics), indent=2) + "\n", encoding="utf-8")


def run_model_round(
    feedback: pd.DataFrame,
    gold: pd.DataFrame,
    *,
    base: str,
    out: Path,
    settings: ModelRoundSettings,
    round_index: int = 0,
    points: Mapping[str, float] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    progress: Callable[[float, str], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> ModelRound:
    """Run one round of language-model candidates (see the module docstring).

    Parameters
    ----------
    feedback : DataFrame
        ``sft``: :func:`crowdtune.records.revisions_frame` (``prompt``, ``original``,
        ``revised``, ``contributor``); ``dpo``: :func:`crowdtune.records.comparisons_frame`
        (``prompt``, ``response_a``, ``response_b``, ``label``, ``annotator``).
    gold : DataFrame
        ``sft``: ``prompt``, ``original``, ``reference`` (the target revision); ``dpo``:
        ``prompt``, ``response_a``, ``response_b`` and ``verdict`` (``a`` or ``b``; ties
        skipped) or a comparison frame's ``label`` (:func:`crowdtune.records.comparisons_frame`).
    base : str
        The current base: ``"tiny"``, ``"smollm2"``, a hub name or a folder an earlier round
        wrote.
    out : Path
        This round's folder: ``group-<g>/`` per candidate, ``extra/`` for leave-one-out fits.
    settings : ModelRoundSettings
    round_index : int
        Rounds before this one (0 for the first): epsilon-greedy's schedule, the round's number.
    points : mapping of str to float, optional
        Points so far per contributor, for the strategies that sort by them.
    history : sequence of dict
        Earlier rounds' :meth:`ModelRound.to_dict` (the ``regression`` scheme replays them).
    progress : callable, optional
        Called with the fraction of the round done (0-1) and a message, at least once per step.
    callbacks : sequence
        ``transformers.TrainerCallback`` objects added to every training; an exception one
        raises (a cancellation) stops the round and propagates.

    Raises
    ------
    ValueError
        Missing columns, no usable gold items, fewer contributors than groups, or no group could
        train a candidate (the message gives each group's reason); a ``reward_model`` folder
        that holds another stage's model.
    FileNotFoundError
        No ``reward_model`` folder (or no model in it), before anything trains.
    """
    started = time.perf_counter()
    reward_model = check_reward_model(settings.reward_model)
    out = Path(out)
    # A drawn seed is kept to 63 bits so that it survives JSON and a BIGINT column.
    seed = secrets.randbits(63) if settings.seed is None else settings.seed
    settings = dataclasses.replace(
        settings, seed=seed, learning_rate=settings.resolved_learning_rate()
    )
    group_stream, train_stream, choice_stream = np.random.SeedSequence(seed).spawn(3)
    # One 32-bit training seed for every training of the round (transformers seeds numpy with
    # it), so candidates differ only in their data; "tiny" is rebuilt from it too.
    train_seed = int(train_stream.generate_state(1)[0])
    choice_rng = np.random.default_rng(choice_stream)
    bootstrap_seed = int(choice_rng.integers(2**31))

    weights = (
        annotator_weights(feedback, settings.vote_weights) if settings.candidate == "dpo" else None
    )
    data = prepare_round_data(settings.candidate, feedback, gold, weights)
    names = sorted(data.rows_by_contributor)
    if len(names) < settings.n_groups:
        raise ValueError(
            f"n_groups is {settings.n_groups} but only {len(names)} contributor(s) have feedback "
            f"outside the gold items ({data.n_gold_rows_excluded} of {data.n_feedback_rows} rows "
            "are on gold items); lower n_groups or collect more feedback"
        )
    groups = group_round(
        names,
        points,
        settings.strategy,
        settings.n_groups,
        round_index,
        settings.horizon,
        np.random.default_rng(group_stream),
    )
    members = [
        [n for n, g in zip(names, groups, strict=True) if g == k] for k in range(settings.n_groups)
    ]
    trainable = [sum(data.n_rows(n) for n in group) for group in members]
    planned = sum(count > 0 for count in trainable)
    if settings.scheme == "leave-one-out":
        planned += min(
            settings.loo_budget,
            sum(
                len(g) for g, count in zip(members, trainable, strict=True) if count and len(g) > 1
            ),
        )
    tracker = _Progress(progress, 1 + planned)
    number = round_index + 1

    tracker.tell(0.0, f"round {number}: evaluating the base {base}")
    base_model, tokenizer = load_trained(base, "causal-lm", seed=train_seed)
    evaluator = round_evaluation(
        data,
        tokenizer,
        reward_model=reward_model,
        max_new_tokens=settings.max_new_tokens,
        select_by=settings.select_by,
        report=lambda message: tracker.note(f"round {number}: {message}"),
        chat=getattr(tokenizer, "chat_template", None) is not None,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        n_bootstrap=settings.n_bootstrap,
        seed=bootstrap_seed,
    )
    base_evaluation = evaluator.measure_base(base_model)
    del base_model
    tracker.finish_unit(f"round {number}: base evaluated")

    trainer = _Trainer(data, base, settings, train_seed, number, callbacks, tracker)
    candidates: list[ModelCandidate] = []
    for k, group in enumerate(members):
        rows = evaluator.training_rows([r for n in group for r in data.rows_by_contributor[n]])
        if not group or not rows:
            reason = (
                "no members"
                if not group
                else "only ties"
                if settings.candidate == "dpo"
                else "no training rows"
            )
            candidates.append(ModelCandidate(k + 1, group, 0, reason=reason))
            continue
        folder, data_hash = trainer.train(rows, out / f"group-{k + 1}", f"group {k + 1}")
        model, _ = load_trained(folder, "causal-lm")
        evaluation = evaluator.evaluate(model)
        del model
        trainer.record(
            folder, group=k + 1, members=group, data_hash=data_hash, evaluation=evaluation
        )
        score = evaluator.score(evaluation)
        candidates.append(
            ModelCandidate(
                k + 1,
                group,
                len(rows),
                path=str(folder),
                evaluation=evaluation,
                score=score,
                gain=score - evaluator.base_score,
            )
        )
        tracker.finish_unit(f"round {number}: group {k + 1} trained and evaluated")

    scored = {c.group - 1: float(c.score) for c in candidates if c.score is not None}
    if not scored:
        problems = "; ".join(f"group {c.group}: {c.reason}" for c in candidates)
        raise ValueError(f"no group could train a candidate ({problems}); collect more feedback")
    order = sorted(scored, key=lambda k: (-scored[k], k))
    if settings.selection == "random":
        chosen = order[int(choice_rng.integers(len(order)))]
        order = [chosen, *(k for k in order if k != chosen)]
    winner = order[0]
    rank_of_group = np.full(settings.n_groups, settings.n_groups)
    rank_of_group[order] = np.arange(len(order))
    candidates = [
        dataclasses.replace(
            c, rank=int(rank_of_group[c.group - 1]) if c.score is not None else None
        )
        for c in candidates
    ]
    improved = scored[winner] > evaluator.base_score
    gains = np.array([c.gain if c.gain is not None else 0.0 for c in candidates])

    reasons: dict[str, str] = {}
    extra_fits = 0
    if settings.scheme in ("rank", "marginal"):
        increments = outcome_points(settings.scheme, groups, rank_of_group, improved, gains)
        paid: dict[str, float | None] = dict(zip(names, increments.tolist(), strict=True))
    elif settings.scheme == "regression":
        paid = dict(
            regression_points(
                names, groups, candidates, history, settings.candidate, settings.select_by
            )
        )
    else:
        paid, reasons, extra_fits = leave_one_out_points(
            candidates,
            order,
            data,
            evaluator,
            trainer,
            out / "extra",
            budget=settings.loo_budget,
            names=names,
        )
    contributors = [
        ModelContributor(
            name, int(g) + 1, data.n_rows(name), paid.get(name, 0.0), reasons.get(name)
        )
        for name, g in zip(names, groups, strict=True)
    ]
    if progress is not None:  # the leave-one-out plan may have counted fits it did not need
        progress(1.0, f"round {number}: done")
    return ModelRound(
        round_number=number,
        settings=settings,
        base=str(base),
        base_evaluation=base_evaluation,
        candidates=candidates,
        contributors=contributors,
        winner=winner + 1,
        improved=bool(improved),
        model_after=str(candidates[winner].path) if improved else str(base),
        extra_fits=extra_fits,
        n_gold=evaluator.n_items,
        n_feedback_rows=data.n_feedback_rows,
        n_training_rows=sum(data.n_rows(n) for n in names),
        n_gold_rows_excluded=data.n_gold_rows_excluded,
        skipped=data.skipped,
        training_seed=train_seed,
        seconds=round(time.perf_counter() - started, 3),
        annotator_weights=weights,
    )
