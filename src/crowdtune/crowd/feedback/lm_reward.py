"""The reward-model win rate of a round's candidates: an evaluation beside the gold one.

With ``ModelRoundSettings.reward_model`` (a folder :func:`crowdtune.training.run_reward`
wrote) the base and every candidate answer the round's gold prompts (each distinct prompt
once, greedy, ``max_new_tokens`` at most, in batches: :func:`crowdtune.training.generate`), the
reward model scores every answer, and each candidate's evaluation gains, against the base's
answers to the same prompts, what ``crowdtune assess`` reports
(:mod:`crowdtune.training.assess`, whose functions compute them):

``reward_win_rate`` with ``reward_win_rate_ci_low`` / ``_ci_high``
    the share of prompts where the candidate's answer gets the higher reward (a tie counts
    half; an answer identical to the base's is an exact tie, :func:`answer_rewards`), with a 95%
    percentile bootstrap interval over prompts;
``length_controlled_win_rate`` with ``length_controlled_win_rate_ci_low`` / ``_ci_high``
    AlpacaEval 2.0's win rate at equal answer lengths
    (:func:`crowdtune.training.assess.length_controlled_win_rate`), with
    ``length_coefficient``: reward models favour longer answers, so a candidate can win by
    talking more; this tells;
``reward_prompts``, ``answers_changed``, ``mean_reward``, ``mean_answer_length``
    the prompts judged, how many answers differ from the base's, and the candidate's averages.

The gold metric (``metric``, ``value``, ``diff`` ...) stays as it was. The base's own evaluation
gains ``reward_win_rate`` 0.5 (a model against itself) and its mean reward and length.

Prompts are generated from as the round trains on them (one user message through the chat
template when the base's tokenizer has one) and scored as ``crowdtune assess`` scores them:
the plain prompt text followed by the answer, the format the reward stage trains on.

``select_by="reward"`` makes the win rate the round's score: the best win rate wins, the round
improves when it is above 0.5, and a candidate's gain (what ``marginal``, ``regression`` and
``leave-one-out`` pay) is its win rate minus 0.5. The reward model is loaded once per round and
kept, together with the base's answers; generation is the slow part and reports progress per
batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crowdtune.crowd.feedback.lm_evaluation import GoldEvaluation, RoundData
from crowdtune.training.assess import (
    answer_rewards,
    length_controlled_win_rate,
    reward_model_folder,
    win_indicators,
    win_rate,
)
from crowdtune.training.generation import generate, on_inference_device, reward_scores
from crowdtune.training.stages import load_trained

__all__ = ["SELECT_BY", "RewardEvaluation", "check_reward_model", "round_evaluation"]

#: What a round's winner is chosen by: the gold metric, or the reward-model win rate.
SELECT_BY = ("gold", "reward")


def check_reward_model(reward_model: str | None) -> Path | None:
    """The reward model's folder, checked at the start of a round (before any training), on
    the machine that runs it; None when the round has none.

    Raises
    ------
    FileNotFoundError
        No such folder, or no model in it (the message names the path).
    ValueError
        The folder holds another stage's model.
    """
    if reward_model is None:
        return None
    return reward_model_folder(reward_model, "reward_model")


class RewardEvaluation(GoldEvaluation):
    """A :class:`GoldEvaluation` whose evaluations also carry the reward-model win rate
    against the base (see the module docstring); with ``select_by="reward"`` it scores by it.

    Parameters
    ----------
    data, tokenizer, **options
        As :class:`GoldEvaluation` takes them (``batch_size`` also batches generation and
        scoring; ``n_bootstrap`` and ``seed`` the win rates' intervals).
    reward_model : Path
        A folder :func:`check_reward_model` accepted.
    max_new_tokens : int
        New tokens per answer at most.
    select_by : {"gold", "reward"}
    report : callable, optional
        Called with a message before every batch of generation.
    """

    def __init__(
        self,
        data: RoundData,
        tokenizer: Any,
        *,
        reward_model: Path,
        max_new_tokens: int,
        select_by: str,
        report: Callable[[str], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(data, tokenizer, **options)
        self.max_new_tokens, self.select_by = max_new_tokens, select_by
        self.batch_size = int(options["batch_size"])
        self.report = report or (lambda message: None)
        prompts = [p for p in data.gold["prompt"] if isinstance(p, str) and p.strip()]
        self.reward_prompts = list(dict.fromkeys(prompts))
        if not self.reward_prompts:
            raise ValueError("no gold item has a prompt for the reward model's win rate")
        scorer, self.scorer_tokenizer = load_trained(
            reward_model, "sequence-classification", num_labels=1
        )
        self.scorer = on_inference_device(scorer)
        self.base_answers: list[str] = []

    def _answers(self, model: Any, whose: str) -> list[str]:
        """``model``'s greedy answer to every gold prompt, a batch at a time."""
        model = on_inference_device(model)
        answers: list[str] = []
        n = len(self.reward_prompts)
        for start in range(0, n, self.batch_size):
            self.report(f"{whose} answering gold prompts for the reward model ({start}/{n})")
            answers.extend(
                generate(
                    model,
                    self.tokenizer,
                    self.reward_prompts[start : start + self.batch_size],
                    self.max_new_tokens,
                    self.batch_size,
                    chat_template=self.chat,
                )
            )
        return answers

    def _score(self, prompts: list[Any], answers: list[str]) -> list[float]:
        return reward_scores(self.scorer, self.scorer_tokenizer, prompts, answers, self.batch_size)

    def measure_base(self, model: Any) -> dict[str, Any]:
        """The gold evaluation of the base, plus its answers' mean reward and length (kept for
        the comparisons)."""
        evaluation = super().measure_base(model)
        self.base_answers = self._answers(model, "the base")
        rewards = self._score(self.reward_prompts, self.base_answers)
        if self.select_by == "reward":
            self.base_score = 0.5
        evaluation.update(
            reward_win_rate=0.5,
            reward_prompts=len(self.reward_prompts),
            mean_reward=float(np.mean(rewards)),
            mean_answer_length=float(np.mean([len(a) for a in self.base_answers])),
        )
        return evaluation

    def evaluate(self, model: Any) -> dict[str, Any]:
        """The gold evaluation plus the reward-model win rates against the base."""
        evaluation = super().evaluate(model)
        answers = self._answers(model, "a candidate")
        rewards = answer_rewards(
            self._score, self.reward_prompts, {"base": self.base_answers, "tuned": answers}
        )
        rate, (low, high) = win_rate(rewards["tuned"], rewards["base"], self.n_bootstrap, self.seed)
        lengths = np.array([len(a) for a in answers], dtype=float)
        base_lengths = np.array([len(a) for a in self.base_answers], dtype=float)
        controlled = length_controlled_win_rate(
            win_indicators(rewards["tuned"], rewards["base"]),
            lengths - base_lengths,
            self.n_bootstrap,
            self.seed,
        )
        evaluation.update(
            reward_win_rate=rate,
            reward_win_rate_ci_low=low,
            reward_win_rate_ci_high=high,
            length_controlled_win_rate=controlled["lc_win_rate"],
            length_controlled_win_rate_ci_low=controlled["ci"][0],
            length_controlled_win_rate_ci_high=controlled["ci"][1],
            length_coefficient=controlled["length_coefficient"],
            reward_prompts=len(self.reward_prompts),
            answers_changed=sum(a != b for a, b in zip(answers, self.base_answers, strict=True)),
            mean_reward=float(np.mean(rewards["tuned"])),
            mean_answer_length=float(lengths.mean()),
        )
        return evaluation

    def score(self, evaluation: dict[str, Any]) -> float:
        """Higher is better: the reward win rate with ``select_by="reward"``, else the gold
        score."""
        if self.select_by == "reward":
            return float(evaluation["reward_win_rate"])
        return super().score(evaluation)


def round_evaluation(
    data: RoundData,
    tokenizer: Any,
    *,
    reward_model: Path | None,
    max_new_tokens: int,
    select_by: str,
    report: Callable[[str], None] | None = None,
    **options: Any,
) -> GoldEvaluation:
    """The evaluation a round's candidates compete on: the gold one, with the reward-model win
    rate where a reward model is given."""
    if reward_model is None:
        return GoldEvaluation(data, tokenizer, **options)
    return RewardEvaluation(
        data,
        tokenizer,
        reward_model=reward_model,
        max_new_tokens=max_new_tokens,
        select_by=select_by,
        report=report,
        **options,
    )
