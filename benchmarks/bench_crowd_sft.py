"""Benchmark: Crowd-SFT rounds on SmolLM2 with a scripted crowd (issue #20, item 8).

A revision campaign on CaR, run as the worker runs it (:func:`run_model_round`, LoRA on the CPU):

- the crowd: 6 ``expert`` (submit CaR's expert revision), 3 ``lazy`` (return the answer
  unchanged), 3 ``adversarial`` (another item's answer) contributors
  (:mod:`crowdtune.crowd.scripted`);
- every round, fresh CaR **train** items (the original Alpaca answer to revise); each
  contributor revises ``--per-contributor`` of them;
- gold: the first ``--gold`` CaR **test** items, their expert revision as the reference; the
  evaluation is the held-out mean per-token NLL of those references (lower is better);
- 3 rounds × 4 groups, random grouping, ``regression`` points (no extra training), each
  candidate a LoRA adapter trained ``--steps`` steps from the current base (SmolLM2-135M-Instruct,
  then the winner of the last round that improved).

Against two anchors measured in the same run:

- **single model**: one LoRA adapter trained on all the crowd's revisions of all rounds, with
  the step budget of one round's candidates (``groups × steps``), from SmolLM2: what training
  on everything without any grouping or selection buys for the compute of one round;
- **random winner**: the same rounds (same seeds, same feedback) with ``selection="random"``,
  the comparison the seeds' point-in-space study lacked: does selecting by evaluation matter?

It prints the NLL by round with 95 % bootstrap intervals (base, winner, paired difference),
the final models side by side with ratios, the credit of each behaviour (Spearman of the
accumulated points with the behaviour quality expert > lazy > adversarial, the adversaries'
ranks; the ``marginal`` and ``rank`` points of the same rounds, computed from the recorded
gains, beside the paid ``regression`` points) and the time per round, and writes everything to
``reports/bench_crowd_sft.json``.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_crowd_sft.py`` (SmolLM2; the defaults, 10 steps
× batch 4 × 256 tokens and 48 gold items, need ~80 min on 2 shared cores; RESULTS.md's figures
come from ``--steps 5 --gold 24 --max-length 128 --batch-size 2 --learning-rate 1e-3``, 46 min on
cores shared with other work, about 15 uncontended); ``--quick``: the tiny model and a small
crowd, a smoke run in about ten seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crowdtune.crowd.feedback.lm_evaluation import GoldEvaluation, prepare_round_data
from crowdtune.crowd.feedback.lm_round import ModelRoundSettings, run_model_round
from crowdtune.crowd.feedback.round import accumulated_points
from crowdtune.crowd.scripted import BEHAVIOUR_QUALITY, revise
from crowdtune.datasets.registry import load_revisions
from crowdtune.records import Revision, revisions_frame
from crowdtune.training import load_trained

CROWD = {"expert": 6, "lazy": 3, "adversarial": 3}


def crowd(sizes: dict[str, int]) -> dict[str, str]:
    """Contributor name → behaviour."""
    return {f"{b}-{i + 1}": b for b, n in sizes.items() for i in range(n)}


def round_feedback(
    items: list[Revision], people: dict[str, str], per: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Every contributor revises ``per`` of the round's items, as its behaviour dictates."""
    pool = [item.original for item in items]
    rows = []
    for name, behaviour in people.items():
        for index in rng.choice(len(items), size=per, replace=False):
            item = items[int(index)]
            prompt = " ".join(item.prompt)
            text = revise(behaviour, prompt, item.original, item.revised, rng, pool=pool)
            rows.append(
                Revision(
                    id=f"{item.id}/{name}",
                    prompt=item.prompt,
                    original=item.original,
                    revised=text,
                    contributor=name,
                    source="bench",
                )  # fmt: skip
            )
    return revisions_frame(rows)


def gold_frame(items: list[Revision]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": [" ".join(i.prompt) for i in items],
            "original": [i.original for i in items],
            "reference": [i.revised for i in items],
        }
    )


def run_rounds(
    feedback: list[pd.DataFrame], gold: pd.DataFrame, base: str, out: Path,
    settings: ModelRoundSettings,
) -> list[dict[str, Any]]:  # fmt: skip
    history: list[dict[str, Any]] = []
    for index, frame in enumerate(feedback):
        outcome = run_model_round(
            frame, gold, base=base, out=out / f"round-{index + 1}",
            settings=ModelRoundSettings(**{**vars(settings), "seed": settings.seed + index}),
            round_index=index, points=accumulated_points(history), history=history,
        )  # fmt: skip
        details = outcome.to_dict()
        history.append(details)
        base = outcome.model_after
        winner = details["candidates"][details["winner"] - 1]["evaluation"]
        print(f"  round {index + 1} ({settings.selection}): base "
              f"{fmt(details['base_evaluation'])}  winner group {details['winner']} "
              f"{fmt(winner)}  diff {diff(winner)}  improved {details['improved']}  "
              f"{details['seconds']:.0f} s", flush=True)  # fmt: skip
    return history


def fmt(evaluation: dict[str, Any]) -> str:
    return (f"{evaluation['value']:.4f} [{evaluation['value_ci_low']:.4f}, "
            f"{evaluation['value_ci_high']:.4f}]")  # fmt: skip


def diff(evaluation: dict[str, Any]) -> str:
    return f"{evaluation['diff']:+.4f} [{evaluation['ci_low']:+.4f}, {evaluation['ci_high']:+.4f}]"


def final_model(history: list[dict[str, Any]]) -> str:
    """The model the last round left (its winner if it improved, else its base)."""
    return str(history[-1]["model_after"])


def compare(
    finals: dict[str, str],
    base: str,
    gold: pd.DataFrame,
    settings: ModelRoundSettings,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each final model's NLL against the first base, and crowdtune's against each anchor,
    all paired over the same gold items (the round's own evaluation code)."""
    data = prepare_round_data("sft", revisions_frame([]), gold)
    base_model, tokenizer = load_trained(base, "causal-lm", seed=seed)
    evaluation = GoldEvaluation(
        data, tokenizer, chat=tokenizer.chat_template is not None,
        batch_size=settings.batch_size, max_length=settings.max_length,
        n_bootstrap=settings.n_bootstrap, seed=0,
    )  # fmt: skip
    evaluation.measure_base(base_model)
    base_values = evaluation.item_values(base_model)
    values = {name: evaluation.item_values(load_trained(path, "causal-lm", seed=seed)[0])
              for name, path in finals.items()}  # fmt: skip
    results = {name: evaluation.summary(v, v - base_values) for name, v in values.items()}
    ours = values["crowdtune (best winner)"]
    paired = {name: evaluation.summary(ours, ours - values[name])
              for name in ("single model", "random winner")}  # fmt: skip
    return results, paired


def credit(history: list[dict[str, Any]], people: dict[str, str]) -> dict[str, Any]:
    """Spearman of each scheme's accumulated points with the behaviour quality, and the
    adversaries' ranks (1 = most points)."""
    paid = accumulated_points(history)
    marginal: dict[str, float] = {}
    rank: dict[str, float] = {}
    for details in history:
        by_group = {c["group"]: c for c in details["candidates"]}
        n_groups = len(by_group)
        for row in details["contributors"]:
            candidate = by_group[row["group"]]
            marginal[row["contributor"]] = marginal.get(row["contributor"], 0.0) + float(
                candidate["gain"] or 0.0
            )
            ranked = details["improved"] and candidate["rank"] is not None
            earned = n_groups - candidate["rank"] if ranked else 0
            rank[row["contributor"]] = rank.get(row["contributor"], 0.0) + earned
    out: dict[str, Any] = {}
    names = sorted(people)
    quality = [BEHAVIOUR_QUALITY[people[n]] for n in names]
    for scheme, points in (("regression (paid)", paid), ("marginal", marginal), ("rank", rank)):
        values = [points.get(n, 0.0) for n in names]
        # Constant points (rank points of rounds that never improved) have no rank correlation.
        rho = spearmanr(values, quality).statistic if len(set(values)) > 1 else float("nan")
        order = sorted(names, key=lambda n: -points.get(n, 0.0))
        adversaries = [order.index(n) + 1 for n in names if people[n] == "adversarial"]
        by_behaviour = {
            b: float(np.mean([points.get(n, 0.0) for n in names if people[n] == b])) for b in CROWD
        }
        out[scheme] = {"spearman": float(rho), "adversary_ranks": adversaries,
                       "mean_points": by_behaviour}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, small crowd, smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="training steps per candidate")
    parser.add_argument("--gold", type=int, default=48, help="CaR test items evaluated")
    parser.add_argument("--per-contributor", type=int, default=8, help="revisions per round")
    parser.add_argument("--items", type=int, default=32, help="CaR train items per round")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="None: the rounds' LoRA default (2e-4)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("reports/bench_crowd_sft.json"))
    args = parser.parse_args()
    model = "tiny" if args.quick else "smollm2"
    sizes = {"expert": 2, "lazy": 1, "adversarial": 1} if args.quick else CROWD
    if args.quick:
        args.rounds, args.groups, args.steps, args.gold = 2, 2, 2, 8
        args.per_contributor, args.items, args.max_length = 4, 8, 128
    people = crowd(sizes)

    rng = np.random.default_rng(args.seed)
    train = load_revisions("@car:train")
    order = rng.permutation(len(train))
    gold_items = load_revisions("@car:test")[: args.gold]
    gold = gold_frame(gold_items)
    feedback = [
        round_feedback([train[int(i)] for i in order[r * args.items : (r + 1) * args.items]],
                       people, args.per_contributor, rng)
        for r in range(args.rounds)
    ]  # fmt: skip
    settings = ModelRoundSettings(
        candidate="sft", strategy="random", scheme="regression", n_groups=args.groups,
        seed=args.seed, max_steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length, n_bootstrap=2000,
    )  # fmt: skip
    print(f"Crowd-SFT on {model}: {args.rounds} rounds x {args.groups} groups, {args.steps} "
          f"LoRA steps per candidate (batch {args.batch_size}, max_length {args.max_length}, "
          f"lr {settings.resolved_learning_rate()}), {len(people)} contributors "
          f"({', '.join(f'{n} {b}' for b, n in sizes.items())}) x {args.per_contributor} "
          f"revisions of {args.items} fresh CaR train items per round; gold: {args.gold} CaR "
          "test items (expert revisions)", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-crowd-sft-") as folder:
        out = Path(folder)
        started = time.perf_counter()
        best = run_rounds(feedback, gold, model, out / "best", settings)
        best_seconds = time.perf_counter() - started
        started = time.perf_counter()
        random_winner = run_rounds(
            feedback, gold, model, out / "random",
            ModelRoundSettings(**{**vars(settings), "selection": "random"}),
        )  # fmt: skip
        random_seconds = time.perf_counter() - started
        started = time.perf_counter()
        single = run_model_round(
            pd.concat(feedback, ignore_index=True), gold, base=model, out=out / "single",
            settings=ModelRoundSettings(**{**vars(settings), "n_groups": 1,
                                           "max_steps": args.groups * args.steps,
                                           "scheme": "rank"}),
        ).to_dict()  # fmt: skip
        single_seconds = time.perf_counter() - started
        finals = {
            "crowdtune (best winner)": final_model(best),
            "random winner": final_model(random_winner),
            "single model": single["model_after"],
        }
        # The rounds' training seed rebuilds the same "tiny" base (--quick); SmolLM2 ignores it.
        results, paired = compare(finals, model, gold, settings, best[0]["training_seed"])

    base = best[0]["base_evaluation"]
    print(f"\nHeld-out NLL of {base['n_items']} CaR test expert revisions (nats/token, 95% CI):")
    print(f"  base {model}: {fmt(base)}")
    for name, evaluation in results.items():
        print(f"  {name:24} {fmt(evaluation)}  vs base {diff(evaluation)}")
    ours = results["crowdtune (best winner)"]["value"]
    for anchor in ("single model", "random winner"):
        theirs = results[anchor]["value"]
        print(f"  anchor {anchor}: {theirs:.4f}  crowdtune: {ours:.4f}  ratio {ours / theirs:.3f}"
              f"  crowdtune - anchor {diff(paired[anchor])}")  # fmt: skip
    behaviours = credit(best, people)
    print("\nCredit by behaviour (accumulated over the rounds; Spearman with expert > lazy > "
          "adversarial; adversaries' ranks among", len(people), "contributors):")  # fmt: skip
    for scheme, row in behaviours.items():
        means = ", ".join(f"{b} {v:+.4f}" for b, v in row["mean_points"].items())
        print(f"  {scheme:18} Spearman {row['spearman']:+.3f}  adversaries {row['adversary_ranks']}"
              f"  mean points: {means}")  # fmt: skip
    per_round = [d["seconds"] for d in best]
    print(f"\nTime: {np.mean(per_round):.0f} s per round (best winner; "
          f"{', '.join(f'{s:.0f}' for s in per_round)}), rounds {best_seconds:.0f} s, "
          f"random-winner rounds {random_seconds:.0f} s, "
          f"single model {single_seconds:.0f} s")  # fmt: skip
    summary = {
        "model": model, "args": {k: str(v) for k, v in vars(args).items()},
        "settings": vars(settings), "base": base, "final": results,
        "rounds": best, "random_winner_rounds": random_winner, "single": single,
        "credit": behaviours, "seconds": {"rounds": best_seconds, "random": random_seconds,
                                          "single": single_seconds},
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
