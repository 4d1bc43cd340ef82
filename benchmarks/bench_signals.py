"""Benchmark: the quality signals of revision and rating campaigns, as the server computes them.

Two projects on a temporary SQLite store, answered by simulated contributors through the
repository (the server's own functions):

- revisions: the 254 CaR test items (original answer → expert revision as the reference),
  overlap 3, revised by ``expert`` (writes the reference), ``lazy`` (submits the answer
  unchanged) and ``half`` (keeps the first half of the reference's words);
- ratings: 200 items × 3 raters on a 1–7 scale with 20 gold items: ``careful`` (the true
  score), ``noisy`` (true ± 1), ``random`` (uniform).

It prints, side by side from the same run: the anchor, Krippendorff's alpha of the ratings from
the ``krippendorff`` package on the raters × items matrix (point estimate only), and crowdtune's
(the same estimate plus 200 bootstrap resamples over items and one alpha per rater), with both
times; then each reviser's edits, CaR quality gain and gold accuracy, and the time the admin
page takes to compute them the first time and again (the process keeps the scores).

The quality gain needs the CaR quality scorer fitted and cached (``make demo`` does it; this
script fits it if missing, about 90 s). Run: ``python benchmarks/bench_signals.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import krippendorff
import numpy as np

from crowdtune.curation.scoring import default_scorer
from crowdtune.datasets import revision_items
from crowdtune.datasets.car import load_car_revisions
from crowdtune.records import ratings_frame
from crowdtune.server.scorer import SCORER_PARAMS, QualityScorer
from crowdtune.server.signals import project_signals
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo


def answer_all(session, project_id, people, answer):
    for person in people:
        while (task := repo.next_task(session, project_id, person.id)) is not None:
            repo.submit_response(session, task.id, person.id, **answer(person.name, task.item))


def revisions(session) -> None:
    project = repo.create_project(session, "car", kind="revision", overlap=3)
    repo.add_items(session, project.id, revision_items(load_car_revisions("test")))
    people = [repo.create_contributor(session, name)[0] for name in ("expert", "lazy", "half")]

    def revise(name, item):
        original = item.response_a[0]
        words = (item.reference or original).split()
        half = " ".join(words[: max(1, len(words) // 2)])
        return {"revision": {"expert": item.reference, "lazy": original, "half": half}[name]}

    answer_all(session, project.id, people, revise)
    scorer = QualityScorer()
    start = time.perf_counter()
    signals = project_signals(session, project.id, scorer=scorer)
    first = time.perf_counter() - start
    start = time.perf_counter()
    project_signals(session, project.id, scorer=scorer)
    again = time.perf_counter() - start
    edits = signals["revisions"]
    print(f"revisions: {edits['n_revisions']} on {edits['n_items']} CaR items; signals in "
          f"{first:.2f} s first, {again:.2f} s again")  # fmt: skip
    gold = {row["contributor"]: row for row in signals["gold"]["contributors"]}
    print(f"{'reviser':8} {'unchanged':>9} {'edits':>6} {'length':>7} {'gain [95% CI]':>22} "
          f"{'gain>0':>6} {'gold':>8}")  # fmt: skip
    for row in edits["contributors"]:
        g = gold[row["contributor"]]
        gain = f"{row['mean_gain']:.2f} [{row['gain_ci_low']:.2f}, {row['gain_ci_high']:.2f}]"
        print(f"{row['contributor']:8} {row['unchanged_rate']:9.1%} "
              f"{row['mean_edit_distance']:6.1f} {row['mean_length_change']:+7.1f} {gain:>22} "
              f"{row['share_positive']:6.0%} {g['n_correct']:>4}/{g['n_gold']}")  # fmt: skip


def ratings(session) -> None:
    project = repo.create_project(session, "rate", kind="rating", overlap=3)
    truth = np.random.default_rng(0).integers(1, 8, 200)
    items = [{"prompt": f"q{i}", "response": f"a{i}", "id": str(i)} for i in range(200)]
    for i in range(20):
        items[i]["gold"] = int(truth[i])
    repo.add_items(session, project.id, items)
    rng = np.random.default_rng(1)
    people = [repo.create_contributor(session, n)[0] for n in ("careful", "noisy", "random")]

    def rate(name, item):
        true = int(truth[int(item.external_id)])
        noisy = int(np.clip(true + rng.integers(-1, 2), 1, 7))
        return {"score": {"careful": true, "noisy": noisy, "random": int(rng.integers(1, 8))}[name]}

    answer_all(session, project.id, people, rate)
    frame = ratings_frame(repo.project_ratings(session, project.id))
    matrix = frame.pivot_table(index="contributor", columns=["prompt", "response"], values="score")
    start = time.perf_counter()
    anchor = krippendorff.alpha(matrix.to_numpy(), level_of_measurement="interval")
    anchor_time = time.perf_counter() - start
    start = time.perf_counter()
    signals = project_signals(session, project.id)
    ours_time = time.perf_counter() - start
    ours = signals["agreement"]["krippendorff_alpha_interval"]
    print(f"\nratings: {signals['n_ratings']} ratings, 200 items x 3 raters")
    print(f"  anchor  krippendorff.alpha (interval, estimate only)    {anchor:.4f}  "
          f"{anchor_time * 1000:7.1f} ms")  # fmt: skip
    print(f"  crowdtune (estimate, 200 resamples, alpha per rater) {ours['estimate']:.4f}  "
          f"{ours_time * 1000:7.1f} ms  [{ours['ci_low']:.3f}, {ours['ci_high']:.3f}]  "
          f"ratio {ours_time / anchor_time:.0f}x")  # fmt: skip
    gold = {row["contributor"]: row for row in signals["gold"]["contributors"]}
    for row in signals["agreement"]["raters"]:
        g = gold[row["contributor"]]
        print(f"  {row['contributor']:8} alpha vs the others {row['alpha_interval']:+.3f} "
              f"[{row['interval_ci_low']:+.3f}, {row['interval_ci_high']:+.3f}]  "
              f"gold {g['n_correct']}/{g['n_gold']}")  # fmt: skip


def main() -> None:
    start = time.perf_counter()
    default_scorer(params=SCORER_PARAMS)
    print(f"CaR quality scorer ({SCORER_PARAMS}) ready in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'signals.db'}"
        upgrade(url)
        engine = make_engine(url)
        with session_factory(engine)() as session:
            revisions(session)
            ratings(session)
        engine.dispose()


if __name__ == "__main__":
    main()
