"""The data of a language-model round and the gold evaluation its candidates compete on.

:func:`prepare_round_data` splits a project's feedback into each contributor's training
examples, leaving out everything on gold items; :class:`GoldEvaluation` turns examples into the
rows the TRL stages read and scores a model on the gold items:

``sft`` (metric ``nll``)
    the mean per-token negative log-likelihood (nats) of each gold item's reference revision
    given its prompt, averaged over items (every item weighs the same, whatever its length);
    lower is better, the score is its negative. ``diff`` is candidate minus base, with a paired
    bootstrap interval over items.
``dpo`` (metric ``accuracy``)
    the share of decided gold votes where DPO's implicit reward (the candidate's log-likelihood
    ratio to the round's base, :func:`crowdtune.training.implicit_rewards`) is higher for the
    winner (a tie of rewards counts half). The base's reward is 0 everywhere, so its accuracy is
    0.5 by definition. ``diff`` is accuracy minus 0.5, with a bootstrap interval over votes.

``value_ci_low`` / ``value_ci_high`` bound the value itself, ``ci_low`` / ``ci_high`` the diff
(95 %, percentile bootstrap, :func:`crowdtune.stats.bootstrap_mean_ci`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.stats import bootstrap_mean_ci
from crowdtune.training.likelihood import completion_nll

__all__ = ["GoldEvaluation", "ModelCandidate", "RoundData", "prepare_round_data"]

_FEEDBACK_COLUMNS = {
    "sft": ("prompt", "original", "revised"),
    "dpo": ("prompt", "response_a", "response_b"),
}
_GOLD_COLUMNS = {
    "sft": ("prompt", "original", "reference"),
    "dpo": ("prompt", "response_a", "response_b"),
}


@dataclass(frozen=True)
class ModelCandidate:
    """One group's candidate; ``reason`` says why a group has none (then no path or score).

    ``gain`` is ``score`` minus the base's score; ``rank`` 0 is the winner.
    """

    group: int
    members: list[str]
    n_rows: int
    path: str | None = None
    evaluation: dict[str, Any] | None = None
    score: float | None = None
    gain: float | None = None
    rank: int | None = None
    reason: str | None = None


@dataclass
class RoundData:
    """Each contributor's training examples (gold items left out) and the gold items.

    An example is ``{"prompt", "completion"}`` (sft) or ``{"prompt", "chosen", "rejected"}``
    (dpo; a tie has ``"tie": True`` and trains nothing; with vote weights each example has its
    annotator's ``"weight"``, and one of weight 0 trains nothing), all plain text.
    """

    kind: str
    rows_by_contributor: dict[str, list[dict[str, Any]]]
    gold: pd.DataFrame
    n_feedback_rows: int
    n_gold_rows_excluded: int
    skipped: list[str] = field(default_factory=list)

    def n_rows(self, name: str) -> int:
        """Training rows of a contributor (ties and blank revisions excluded)."""
        return sum(_trains(row) for row in self.rows_by_contributor.get(name, []))


def _trains(row: dict[str, Any]) -> bool:
    return (
        not row.get("tie")
        and row.get("weight", 1.0) > 0
        and bool(str(row.get("completion", row.get("chosen", ""))).strip())
    )


def _check_columns(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    if missing := [c for c in needed if c not in frame.columns]:
        raise ValueError(
            f"{what} lacks the column(s) {', '.join(missing)}; it needs {', '.join(needed)} "
            f"(it has {', '.join(map(str, frame.columns)) or 'none'})"
        )


def _winner(value: Any) -> int | None:
    """0 (A won), 1 (B won) or None (a tie or no verdict) from a label or a verdict."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | np.integer):
        return int(value) if int(value) in (0, 1) else None
    text = str(getattr(value, "value", value)).strip().lower()
    return {"a": 0, "b": 1, "0": 0, "1": 1}.get(text)


def prepare_round_data(
    kind: str,
    feedback: pd.DataFrame,
    gold: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
) -> RoundData:
    """Split ``feedback`` into training examples per contributor (see :class:`RoundData`).

    Feedback on a gold item is left out and counted: for ``sft`` a revision of a gold
    ``(prompt, original)``, for ``dpo`` any vote on a gold prompt (training on other answers to
    the very prompt the evaluation asks would leak it). The contributor is the ``contributor``
    column, else ``annotator`` (a comparison frame's). ``weights`` (dpo: each annotator's vote
    weight, :func:`~crowdtune.crowd.feedback.weights.annotator_weights`) go into the examples;
    TRL's DPO trainer takes no per-example weight, so a vote of weight 0 is dropped and any
    other kept whole.
    """
    _check_columns(feedback, _FEEDBACK_COLUMNS[kind], f"the {kind} feedback")
    who = "contributor" if "contributor" in feedback.columns else "annotator"
    _check_columns(feedback, (who,), f"the {kind} feedback")
    _check_columns(gold, _GOLD_COLUMNS[kind], f"the {kind} gold items")
    if kind == "dpo" and not {"verdict", "label"} & set(gold.columns):
        raise ValueError(
            "the dpo gold items lack a verdict: give a `verdict` column (a, b or tie) or a "
            "comparison frame's `label` (0 = A, 1 = B, 2 = tie)"
        )
    if kind == "sft":
        gold_keys = set(zip(gold["prompt"], gold["original"], strict=True))
        on_gold = [
            (p, o) in gold_keys
            for p, o in zip(feedback["prompt"], feedback["original"], strict=True)
        ]
    else:
        gold_prompts = set(gold["prompt"])
        on_gold = [p in gold_prompts for p in feedback["prompt"]]
    if unnamed := [
        i for i, name in enumerate(feedback[who]) if not isinstance(name, str) or not name
    ]:
        raise ValueError(f"feedback row {unnamed[0]} has no {who}; a round groups rows by {who}")
    rows: dict[str, list[dict[str, Any]]] = {}
    outside = feedback[[not g for g in on_gold]]
    for record in outside.to_dict("records"):
        if kind == "sft":
            example = {"prompt": record["prompt"], "completion": str(record["revised"])}
        else:
            won = _winner(record.get("label", record.get("verdict")))
            a, b = str(record["response_a"]), str(record["response_b"])
            example = (
                {"prompt": record["prompt"], "chosen": a, "rejected": a, "tie": True}
                if won is None
                else {
                    "prompt": record["prompt"],
                    "chosen": (a, b)[won],
                    "rejected": (b, a)[won],
                }
            )
        if weights is not None and kind == "dpo":
            example["weight"] = float(weights.get(str(record[who]), 1.0))
        rows.setdefault(str(record[who]), []).append(example)
    everyone = {str(name) for name in feedback[who]}
    return RoundData(
        kind=kind,
        rows_by_contributor=rows,
        gold=gold.reset_index(drop=True),
        n_feedback_rows=len(feedback),
        n_gold_rows_excluded=int(sum(on_gold)),
        skipped=sorted(everyone - set(rows)),
    )


class GoldEvaluation:
    """Formats a round's rows for its base's tokenizer and scores models on the gold items.

    Parameters
    ----------
    data : RoundData
    tokenizer
        The base's tokenizer (all candidates share it).
    chat : bool
        Rows as conversations (one user message, one assistant message; the tokenizer's chat
        template), else plain strings.
    batch_size, max_length
        Of the likelihood passes (:func:`crowdtune.training.completion_nll`).
    n_bootstrap, seed
        Of the confidence intervals.
    """

    def __init__(
        self,
        data: RoundData,
        tokenizer: Any,
        *,
        chat: bool,
        batch_size: int,
        max_length: int,
        n_bootstrap: int,
        seed: int,
    ) -> None:
        self.kind, self.tokenizer, self.chat = data.kind, tokenizer, chat
        self.options = {"batch_size": batch_size, "max_length": max_length}
        self.n_bootstrap, self.seed = n_bootstrap, seed
        gold = data.gold
        if self.kind == "sft":
            usable = gold[gold["reference"].map(lambda t: isinstance(t, str) and bool(t.strip()))]
            items = usable.drop_duplicates(["prompt", "reference"])
            self.prompts = [self._prompt(p) for p in items["prompt"]]
            self.targets: list[Any] = list(items["reference"])
        else:
            verdicts = gold["verdict"] if "verdict" in gold.columns else gold["label"]
            winners = [_winner(v) for v in verdicts]
            decided = [(row, w) for row, w in zip(gold.to_dict("records"), winners, strict=True)
                       if w is not None]  # fmt: skip
            self.prompts = [self._prompt(row["prompt"]) for row, _ in decided]
            self.targets = [
                (str((row["response_a"], row["response_b"])[w]),
                 str((row["response_b"], row["response_a"])[w]))
                for row, w in decided
            ]  # fmt: skip
        if not self.prompts:
            what = "a reference revision" if self.kind == "sft" else "an a or b verdict"
            raise ValueError(
                f"no gold item with {what}: a round scores every candidate on gold items; "
                "mark some items as gold first"
            )
        self.usable = np.ones(len(self.prompts), dtype=bool)
        self.base_values = np.zeros(len(self.prompts))
        self.base_score = 0.0

    def _prompt(self, text: str) -> Any:
        return [{"role": "user", "content": text}] if self.chat else text

    def _completion(self, text: str) -> Any:
        return [{"role": "assistant", "content": text}] if self.chat else text

    def training_rows(self, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The TRL rows of ``examples`` (ties and blank revisions left out)."""
        rows = []
        for example in examples:
            if not _trains(example):
                continue
            row = {"prompt": self._prompt(example["prompt"])}
            for key in ("completion", "chosen", "rejected"):
                if key in example:
                    row[key] = self._completion(example[key])
            rows.append(row)
        return rows

    @property
    def n_items(self) -> int:
        """Gold items (sft) or decided gold votes (dpo) the evaluation counts."""
        return int(self.usable.sum())

    def _nll(self, model: Any, completions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        return completion_nll(model, self.tokenizer, self.prompts, completions, **self.options)

    def _interval(self, values: np.ndarray) -> tuple[float, float]:
        return bootstrap_mean_ci(values, n_bootstrap=self.n_bootstrap, seed=self.seed)

    def measure_base(self, model: Any) -> dict[str, Any]:
        """Score the round's base (kept for the paired comparisons) and describe it."""
        if self.kind == "sft":
            nll, tokens = self._nll(model, self.targets)
            self.usable = tokens > 0  # a reference cut away by max_length counts nothing
            self.base_values = np.where(self.usable, nll / np.maximum(tokens, 1), np.nan)
            if not self.usable.any():
                raise ValueError(
                    "every gold prompt fills max_length on its own; raise max_length"
                )  # fmt: skip
            value = float(self.base_values[self.usable].mean())
            low, high = self._interval(self.base_values[self.usable])
            self.base_score = -value
            return {"metric": "nll", "value": value, "value_ci_low": low, "value_ci_high": high,
                    "n_items": self.n_items}  # fmt: skip
        winners, losers = zip(*self.targets, strict=True)
        self.reference_won, _ = self._nll(model, winners)
        self.reference_lost, _ = self._nll(model, losers)
        self.base_score = 0.5
        return {"metric": "accuracy", "value": 0.5, "value_ci_low": 0.5, "value_ci_high": 0.5,
                "n_items": self.n_items}  # fmt: skip

    def item_values(self, model: Any) -> np.ndarray:
        """Per gold item: the mean token NLL of its reference (sft), or whether the implicit
        reward ranks the vote's winner first (dpo: 1, 0.5 for equal rewards, 0)."""
        if self.kind == "sft":
            nll, tokens = self._nll(model, self.targets)
            return np.asarray((nll / np.maximum(tokens, 1))[self.usable])
        winners, losers = zip(*self.targets, strict=True)
        policy_won, _ = self._nll(model, winners)
        policy_lost, _ = self._nll(model, losers)
        margin = (self.reference_won - policy_won) - (self.reference_lost - policy_lost)
        return np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))

    def evaluate(self, model: Any) -> dict[str, Any]:
        """``metric``, ``value``, ``diff`` (against the base), their intervals, ``n_items``."""
        values = self.item_values(model)
        diffs = values - (self.base_values[self.usable] if self.kind == "sft" else 0.5)
        return self.summary(values, diffs)

    def summary(self, values: np.ndarray, diffs: np.ndarray) -> dict[str, Any]:
        """The evaluation of per-item ``values`` and their paired differences ``diffs``."""
        low, high = self._interval(values)
        diff_low, diff_high = self._interval(diffs)
        return {
            "metric": "nll" if self.kind == "sft" else "accuracy",
            "value": float(values.mean()),
            "value_ci_low": low,
            "value_ci_high": high,
            "diff": float(diffs.mean()),
            "ci_low": diff_low,
            "ci_high": diff_high,
            "n_items": int(values.size),
        }

    def score(self, evaluation: dict[str, Any]) -> float:
        """Higher is better: minus the NLL, or the accuracy."""
        value = float(evaluation["value"])
        return -value if evaluation["metric"] == "nll" else value
