"""Report section for the training pipeline: each stage's loss, and the assessment.

Takes the stages' ``metrics.json`` contents and an
:class:`crowdtune.training.assess.AssessResult` and lays them out; it computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from crowdtune.reports.html import Section, paragraph, table_html

__all__ = ["assessment_sections"]


def assessment_sections(
    result: Any, stages: Mapping[str, Mapping[str, Any]], seconds: float
) -> list[Section]:
    """One section: the stages (steps, first and last loss, reward accuracy) and the win rates."""
    stage_table = pd.DataFrame(
        {
            "stage": list(stages),
            "steps": [m["steps"] for m in stages.values()],
            "first loss": [m["first_loss"] for m in stages.values()],
            "last loss": [m["last_loss"] for m in stages.values()],
            "held-out reward accuracy": [m.get("reward_accuracy") for m in stages.values()],
            "seconds": [m["train_seconds"] for m in stages.values()],
        }
    )
    win_low, win_high = result.win_rate_ci
    lc_low, lc_high = result.lc_win_rate_ci
    wins = pd.DataFrame(
        {
            "measure": ["win rate", "length-controlled win rate"],
            "value": [result.win_rate, result.lc_win_rate],
            "95% CI low": [win_low, lc_low],
            "95% CI high": [win_high, lc_high],
        }
    )
    sides = pd.DataFrame(
        {
            "model": ["base", "tuned"],
            "mean reward": [result.mean_reward["base"], result.mean_reward["tuned"]],
            "mean length (chars)": [result.mean_length["base"], result.mean_length["tuned"]],
            "mean new tokens": [result.mean_new_tokens["base"], result.mean_new_tokens["tuned"]],
        }
    )
    counts = result.prompts
    text = paragraph(
        f"The tiny pipeline end to end in {seconds:.0f} s: supervised fine-tuning, a reward model "
        "and DPO (from the SFT model) with TRL, then the DPO model against the SFT model on "
        f"{counts['used']} held-out prompts of {counts['source']}, judged by the reward model. "
        "Win rate: ties count half, percentile bootstrap interval over prompts. Length-controlled: "
        "the win rate a logistic regression on the length difference predicts at equal lengths "
        "(as AlpacaEval 2.0). The tiny model starts from random weights; the numbers show the "
        "pipeline, not a useful model."
    )
    return [
        Section(
            "Training: SFT, reward model, DPO and assessment",
            text + table_html(stage_table) + table_html(wins) + table_html(sides),
        )
    ]
