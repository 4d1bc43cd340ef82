"""Assessment: does the tuned model beat its base on held-out prompts, by a reward model?

:func:`assess` generates an answer from both models to every prompt (greedy by default,
:func:`crowdtune.training.generation.generate`), scores each answer with the reward model, and
reports:

- **win rate** of the tuned model: the mean over prompts of 1 (its reward is higher), 1/2 (equal,
  always so where both models gave the same answer: :func:`answer_rewards`) or 0, with a 95%
  percentile bootstrap interval over prompts
  (:func:`crowdtune.stats.bootstrap_mean_ci`).
- **length-controlled win rate**: every published preference signal here favours longer
  answers, and so do reward models trained on them, so a model can "win" by talking more. It is
  AlpacaEval 2.0's (Dubois et al., 2024; ``alpaca_eval`` 0.6.6, ``metrics/glm_winrate.py``, the
  ``length_controlled_minimal`` GLM, the one for a pair without instruction terms): the win is
  regressed on the length difference, ``P(win) = sigmoid(theta + phi * tanh(d / sd(d)))``, ``d``
  = tuned minus base answer length in characters and ``sd`` its sample (centred, ``ddof=1``)
  standard deviation, by an L1-penalised logistic regression whose penalty is chosen by 5-fold
  cross-validation over prompts (:func:`length_controlled_win_rate`); the win rate is read off at
  ``d = 0``: ``sigmoid(theta)``. AlpacaEval's full GLM adds a per-instruction difficulty and pulls
  the fit towards its baseline's verbose and concise "gamed" answers; both are estimated on
  AlpacaEval's 805 instructions with its GPT-4 baseline, so neither exists for a crowd's prompts
  and one pair of models. The interval is a percentile bootstrap over prompts (every replicate
  refits the regression at the cross-validated penalty).

Held-out prompts: the prompts of ``prompts`` that no stage behind the base, tuned or reward
model trained on (their split is rebuilt from each ``metrics.json``,
:func:`crowdtune.training.stages.training_prompts`), shuffled with ``seed``, first
``n_prompts``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from crowdtune.stats import bootstrap_mean_ci
from crowdtune.training.data import StageDataError, split_rows, stage_rows
from crowdtune.training.generation import generate, on_inference_device, reward_scores
from crowdtune.training.stages import (
    load_trained,
    prompt_key,
    read_stage_file,
    training_prompts,
)

__all__ = [
    "AssessResult",
    "answer_rewards",
    "assess",
    "held_out_prompts",
    "length_controlled_win_rate",
    "reward_model_folder",
    "win_indicators",
    "win_rate",
]

#: AlpacaEval's fit (``fit_LogisticRegressionCV``): L1-penalised, no intercept but the model term,
#: liblinear seeded 123, the inverse penalty C cross-validated over these on the log loss, or
#: ``_C_WITHOUT_CV`` where there is nothing to cross-validate.
_CS = np.logspace(-4, 4, 10)
_FOLDS = 5
_C_WITHOUT_CV = 100.0
#: liblinear drops rows of zero weight, and a class with none left makes it print a warning and
#: return zeros (a win rate of 1/2 for a model that won every prompt); this weight keeps such a
#: class (only then: any change of rows moves liblinear's answer within its tolerance).
_MIN_WEIGHT = 1e-12


@dataclass
class AssessResult:
    """The per-prompt rows and the summary of one assessment (``to_dict`` for JSON)."""

    rows: list[dict[str, Any]]
    win_rate: float
    win_rate_ci: tuple[float, float]
    lc_win_rate: float
    lc_win_rate_ci: tuple[float, float]
    length_coefficient: float
    wins: int
    ties: int
    losses: int
    changed: int
    mean_length: dict[str, float]
    mean_new_tokens: dict[str, float]
    mean_reward: dict[str, float]
    prompts: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rows)

    def to_dict(self, rows: bool = False) -> dict[str, Any]:
        """The summary as JSON-ready values (and the per-prompt rows with ``rows=True``)."""
        summary = asdict(self)
        summary.pop("rows")
        summary["n"] = self.n
        summary["win_rate_ci"] = list(self.win_rate_ci)
        summary["lc_win_rate_ci"] = list(self.lc_win_rate_ci)
        if rows:
            summary["rows"] = self.rows
        return summary


def win_indicators(tuned_rewards: Any, base_rewards: Any) -> np.ndarray:
    """1 where the tuned answer scores higher, 0.5 on a tie, 0 where the base one does."""
    tuned = np.asarray(tuned_rewards, dtype=float)
    base = np.asarray(base_rewards, dtype=float)
    if tuned.shape != base.shape or tuned.ndim != 1:
        raise ValueError(
            f"rewards must be two 1-d arrays of one length, got {tuned.shape}, {base.shape}"
        )
    return 0.5 * (np.sign(tuned - base) + 1.0)


def _changed(answers: dict[str, list[str]]) -> list[int]:
    """The prompts where the tuned answer differs from the base answer."""
    pairs = zip(answers["base"], answers["tuned"], strict=True)
    return [i for i, (base, tuned) in enumerate(pairs) if base != tuned]


def answer_rewards(
    score: Callable[[list[Any], list[str]], list[float]],
    prompts: Sequence[Any],
    answers: dict[str, list[str]],
) -> dict[str, np.ndarray]:
    """The reward of the ``"base"`` and ``"tuned"`` answer to every prompt, by
    ``score(prompts, answers)``. Only tuned answers that differ from the base answer are scored;
    an identical one gets the base answer's reward, so the pair is an exact tie: scored in
    another batch (other padding), the same text can differ in the last digits and would count as
    a win or a loss."""
    base = np.asarray(score(list(prompts), list(answers["base"])), dtype=float)
    changed = _changed(answers)
    tuned = base.copy()
    if changed:
        tuned[changed] = score(
            [prompts[i] for i in changed], [answers["tuned"][i] for i in changed]
        )
    return {"base": base, "tuned": tuned}


def win_rate(
    tuned_rewards: Any, base_rewards: Any, n_bootstrap: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The tuned model's win rate (ties count half) and its 95% percentile bootstrap interval.

    Examples
    --------
    >>> rate, (low, high) = win_rate([3, 2, 1, 1], [0, 0, 5, 1])
    >>> rate
    0.625
    """
    wins = win_indicators(tuned_rewards, base_rewards)
    if wins.size == 0:
        raise ValueError("no rewards to compare")
    return float(wins.mean()), bootstrap_mean_ci(wins, n_bootstrap, seed)


def _l1_logistic(
    features: np.ndarray, targets: np.ndarray, weights: np.ndarray, c: float
) -> LogisticRegression:
    """AlpacaEval's L1-penalised logistic regression with fractional targets: every row twice,
    as a win weighted by its target and as a loss weighted by one minus it (``weights`` float[n]
    multiply both: bootstrap counts, or zero for a held-out fold)."""
    model = LogisticRegression(
        C=c, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=123
    )
    won, lost = weights * targets, weights * (1.0 - targets)
    sample_weight = np.concatenate(
        [side if side.any() else np.full_like(side, _MIN_WEIGHT) for side in (won, lost)]
    )
    outcome = np.repeat([1.0, 0.0], targets.size)
    return model.fit(np.vstack([features, features]), outcome, sample_weight)


def _cross_validated_c(features: np.ndarray, targets: np.ndarray) -> float:
    """The C of ``_CS`` with the least held-out log loss (summed over folds, first of ties), as
    ``LogisticRegressionCV`` picks it, the folds ``GroupKFold`` over prompts as AlpacaEval's.
    Fewer than five prompts make fewer folds (AlpacaEval needs five); one prompt takes
    ``_C_WITHOUT_CV``."""
    n = targets.size
    if n < 2:
        return _C_WITHOUT_CV
    groups = np.tile(np.arange(n), 2)
    folds = GroupKFold(n_splits=min(_FOLDS, n)).split(np.zeros((2 * n, 1)), groups=groups)
    held_outs = [np.unique(groups[test]) for _, test in folds]
    loss = np.zeros(_CS.size)
    for held_out in held_outs:
        train = np.ones(n)
        train[held_out] = 0.0
        for j, c in enumerate(_CS):
            prob = _l1_logistic(features, targets, train, c).predict_proba(features[held_out])
            p = np.clip(prob[:, 1], 1e-15, 1 - 1e-15)
            y = targets[held_out]
            loss[j] -= np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(_CS[int(np.argmin(loss))])


def length_controlled_win_rate(
    wins: Any,
    length_difference: Any,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """AlpacaEval 2.0's length-controlled win rate: the win rate at equal lengths, from
    ``P(win) = sigmoid(theta + phi * tanh(d / sd(d)))`` fitted as AlpacaEval fits it (see the
    module docs).

    ``sd`` is the centred sample standard deviation, as AlpacaEval's: centring changes only the
    scale, and ``d = 0`` (equal lengths), where the rate is read, stays ``tanh(0) = 0`` whatever
    the scale. Where all differences are equal (``sd`` 0, or one prompt) the length term is
    dropped: AlpacaEval would divide by zero.

    The penalty is on ``theta`` too (AlpacaEval fits no free intercept), so on few or noisy
    prompts the cross-validation may choose to zero it: a rate of exactly 1/2, "no evidence of a
    difference", as AlpacaEval would report. Each bootstrap replicate is one liblinear fit (about
    1 ms).

    Parameters
    ----------
    wins
        Win indicators in [0, 1] (ties 0.5), one per prompt.
    length_difference
        Tuned minus base answer length, one per prompt.

    Returns
    -------
    dict
        ``lc_win_rate`` (``sigmoid(theta)``; AlpacaEval reports it ×100), ``ci`` (percentile
        bootstrap over prompts, each replicate refitted at the cross-validated C, not
        cross-validated again), ``length_coefficient`` (``phi``: how much a standard deviation
        of extra length moves the log-odds of winning; AlpacaEval's sign is the opposite, its
        difference being baseline minus model), ``c`` (the cross-validated inverse penalty).
    """
    targets = np.asarray(wins, dtype=float)
    difference = np.asarray(length_difference, dtype=float)
    if targets.shape != difference.shape or targets.ndim != 1 or targets.size == 0:
        raise ValueError("wins and length_difference must be non-empty 1-d arrays of one length")
    n = targets.size
    scale = float(np.std(difference, ddof=1)) if n > 1 else 0.0
    feature = np.tanh(difference / scale) if scale > 0 else np.zeros_like(difference)
    features = np.column_stack([feature, np.ones_like(feature)])
    c = _cross_validated_c(features, targets)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)
    coefficients = np.array(
        [_l1_logistic(features, targets, weights, c).coef_[0] for weights in [np.ones(n), *counts]]
    )
    at_zero = 1.0 / (1.0 + np.exp(-coefficients[:, 1]))
    alpha = (1 - level) / 2
    low, high = np.quantile(at_zero[1:], [alpha, 1 - alpha]) if n_bootstrap else (np.nan,) * 2
    return {
        "lc_win_rate": float(at_zero[0]),
        "ci": (float(low), float(high)),
        "length_coefficient": float(coefficients[0, 0]),
        "c": c,
    }


def held_out_prompts(
    src: str, n_prompts: int | None, seed: int = 0, trained: list[str | Path] | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """Distinct prompts of ``src`` that none of the stage folders ``trained`` trained on.

    Returns the prompts (shuffled with ``seed``, at most ``n_prompts``) and counts: ``source``,
    ``available`` (distinct prompts in ``src``), ``excluded_trained`` and ``used``.
    """

    seen: set[str] = set()
    for folder in trained or []:
        for keys in training_prompts(folder).values():
            seen |= keys
    rows = stage_rows(src, "rl").rows
    kept = [row for row in rows if prompt_key(row["prompt"]) not in seen]
    if not kept:
        raise StageDataError(
            f"--prompts {src}: every one of its {len(rows)} prompts was used in training; "
            "assess on another source or split (e.g. @car:test)"
        )
    shuffled, _ = split_rows(kept, 0.0, seed=seed)
    chosen = shuffled if n_prompts is None else shuffled[:n_prompts]
    counts = {
        "source": src,
        "available": len(rows),
        "excluded_trained": len(rows) - len(kept),
        "used": len(chosen),
    }
    return [row["prompt"] for row in chosen], counts


def _check_model(name: str, option: str) -> None:
    """A folder that is named but holds no model fails here, before any generation."""
    path = Path(name).expanduser()
    if path.is_dir() and not any(
        (path / f).is_file() for f in ("config.json", "adapter_config.json")
    ):
        raise FileNotFoundError(f"{option} {name}: a folder with no model in it (no config.json)")


def reward_model_folder(reward_model: str | Path, option: str = "--reward-model") -> Path:
    """The folder of a reward model, checked before anything is generated or trained: a
    directory with a model in it, not another stage's model (a causal LM would load with a
    freshly drawn scoring head and score at random). ``option`` names the setting in messages.

    Raises
    ------
    FileNotFoundError
        No such folder, or no model in it.
    ValueError
        Its ``metrics.json`` records a stage other than ``reward``.
    """
    path = Path(reward_model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{option} {reward_model}: no such folder (expected the --out of "
            "`crowdtune train reward`)"
        )
    _check_model(str(path), option)
    stage = (read_stage_file(path) or {}).get("stage", "reward")
    if stage != "reward":
        raise ValueError(
            f"{option} {reward_model}: a model of the {stage} stage, not a reward model "
            "(expected the --out of `crowdtune train reward`)"
        )
    return path


def assess(
    base: str,
    tuned: str,
    prompts: str,
    reward_model: str | Path,
    n_prompts: int | None = 64,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 8,
    *,
    do_sample: bool = False,
    chat_template: bool = False,
    n_bootstrap: int = 2000,
) -> AssessResult:
    """Generate from ``base`` and ``tuned`` on held-out prompts of ``prompts``, score both with
    ``reward_model``, and compare (see the module docs).

    Parameters
    ----------
    base, tuned
        Models as :func:`crowdtune.training.load_trained` takes them: ``tiny``, ``smollm2``, a
        stage's ``--out`` folder (a LoRA adapter is merged onto its base), a checkpoint folder.
    prompts
        A source (``@car:test``, ``@hh-rlhf``, a JSONL ...); its distinct prompts, minus those
        any stage behind the three models trained on.
    reward_model
        The folder ``run_reward`` (``crowdtune train reward``) wrote.
    n_prompts
        Prompts to assess on (None: all held-out ones).
    max_new_tokens, batch_size, do_sample, chat_template
        Passed to :func:`crowdtune.training.generation.generate`.
    seed
        Seeds the choice of prompts, sampling and the bootstrap.

    Raises
    ------
    FileNotFoundError
        ``reward_model`` is not a folder with a model, or a named model folder is empty.
    ValueError
        ``reward_model`` is another stage's model (:func:`reward_model_folder`).
    crowdtune.training.UnknownModelError
        ``base`` or ``tuned`` names no model.
    """

    started = time.perf_counter()
    reward_path = reward_model_folder(reward_model)
    _check_model(base, "--base")
    _check_model(tuned, "--tuned")
    if n_prompts is not None and n_prompts < 1:
        raise ValueError(f"n_prompts must be at least 1, got {n_prompts}")
    chosen, prompt_counts = held_out_prompts(
        prompts, n_prompts, seed, trained=[base, tuned, reward_path]
    )
    answers: dict[str, list[str]] = {}
    tokens: dict[str, list[int]] = {}
    for side, name in (("base", base), ("tuned", tuned)):
        model, tokenizer = load_trained(name, "causal-lm")
        model = on_inference_device(model)
        generated = generate(
            model, tokenizer, chosen, max_new_tokens, batch_size, do_sample, seed,
            chat_template=chat_template,
        )  # fmt: skip
        answers[side], tokens[side] = list(generated), generated.new_tokens
        del model
    scorer, scorer_tokenizer = load_trained(reward_path, "sequence-classification", num_labels=1)
    scorer = on_inference_device(scorer)
    rewards = answer_rewards(
        lambda p, a: reward_scores(scorer, scorer_tokenizer, p, a, batch_size), chosen, answers
    )
    lengths = {side: np.array([len(a) for a in answers[side]], float) for side in answers}
    wins = win_indicators(rewards["tuned"], rewards["base"])
    rate, rate_ci = win_rate(rewards["tuned"], rewards["base"], n_bootstrap, seed)
    controlled = length_controlled_win_rate(
        wins, lengths["tuned"] - lengths["base"], n_bootstrap, seed
    )
    rows = [
        {
            "prompt": prompt,
            "base": answers["base"][i],
            "tuned": answers["tuned"][i],
            "base_reward": float(rewards["base"][i]),
            "tuned_reward": float(rewards["tuned"][i]),
            "base_length": int(lengths["base"][i]),
            "tuned_length": int(lengths["tuned"][i]),
            "base_new_tokens": tokens["base"][i],
            "tuned_new_tokens": tokens["tuned"][i],
            "win": float(wins[i]),
        }
        for i, prompt in enumerate(chosen)
    ]
    return AssessResult(
        rows=rows,
        win_rate=rate,
        win_rate_ci=rate_ci,
        lc_win_rate=controlled["lc_win_rate"],
        lc_win_rate_ci=controlled["ci"],
        length_coefficient=controlled["length_coefficient"],
        wins=int((wins == 1).sum()),
        ties=int((wins == 0.5).sum()),
        losses=int((wins == 0).sum()),
        changed=len(_changed(answers)),
        mean_length={side: float(v.mean()) for side, v in lengths.items()},
        mean_new_tokens={side: float(np.mean(t)) for side, t in tokens.items()},
        mean_reward={side: float(np.mean(r)) for side, r in rewards.items()},
        prompts=prompt_counts,
        settings={
            "base": base,
            "tuned": tuned,
            "reward_model": str(reward_model),
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "chat_template": chat_template,
            "seed": seed,
            "win_rate_ci": "percentile bootstrap over prompts",
            "lc_win_rate": "sigmoid(b0) of P(win) = sigmoid(b0 + b1 tanh(d / rms(d))), d = "
            "tuned - base length in characters; percentile bootstrap over prompts",
        },
        seconds=round(time.perf_counter() - started, 3),
    )
