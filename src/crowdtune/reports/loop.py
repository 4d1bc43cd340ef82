"""Report section for the Crowd-SFT loop: the lineage's evaluation by round, and the credit of
each scripted behaviour (the summary of :func:`crowdtune.server.campaign.run_loop_campaign`);
it computes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from crowdtune.reports.html import Section, paragraph, table_html

__all__ = ["loop_sections"]


def loop_sections(summary: Mapping[str, Any]) -> list[Section]:
    """One section: rounds (base and winner NLL with the paired CI), credit per behaviour and
    per contributor."""
    settings = summary["settings"]
    crowd = ", ".join(f"{n} {behaviour}" for behaviour, n in settings["crowd"].items())
    rounds = pd.DataFrame(summary["rounds"]).rename(
        columns={
            "base_nll": "base NLL",
            "winner_nll": "winner NLL",
            "difference": "winner − base",
            "ci_low": "95% CI low",
            "ci_high": "95% CI high",
            "base_changed": "base changed",
            "n_items": "gold items",
        }
    )
    behaviours = pd.DataFrame(
        [
            {"behaviour": name, "contributors": row["n"], "mean credit": row["mean_credit"]}
            for name, row in summary["per_behaviour"].items()
        ]
    )
    people = pd.DataFrame(summary["contributors"]).sort_values("credit", ascending=False)
    rho = summary["spearman_credit_quality"]
    seconds = summary["seconds"]
    text = paragraph(
        f"A revision campaign through the real server and worker: {crowd} scripted contributors "
        f"(clients of the HTTP API) revise {settings['n_items']} CaR answers; "
        f"{settings['n_gold']} CaR test answers keep the expert's revision as gold. "
        f"{settings['rounds']} sft rounds of {settings['n_groups']} groups ({settings['strategy']} "
        f"grouping, {settings['scheme']} points, {settings['max_steps']} LoRA steps per candidate "
        f"on the {settings['base_model']} model) run as jobs in the worker; each candidate is "
        "scored by the mean per-token NLL of the gold references (lower is better), with a paired "
        "bootstrap CI of its difference to the base, and the winner becomes the base only if it "
        f"beats it. Collecting took {seconds['collect']:.0f} s; rounds "
        + ", ".join(f"{s:.0f} s" for s in seconds["rounds"])
        + ". Spearman correlation of credit with the behaviours' known quality "
        f"(expert > lazy > adversarial): {'n/a' if rho is None else f'{rho:.2f}'}; adversaries "
        f"rank {summary['adversary_ranks']} of {len(people)}. The tiny model starts from random "
        "weights: the numbers show the loop, not a useful model."
    )
    return [
        Section(
            "The Crowd-SFT loop: rounds through the server and worker",
            text + table_html(rounds) + table_html(behaviours) + table_html(people),
        )
    ]
