"""Benchmark: linguistic features of 20,000 texts, crowdtune against the published approach.

The texts: the first 20,000 GoEmotions train comments (short Reddit texts, ~13 tokens each).

It prints, side by side from the same run:

- the anchor, the approach of "Investigating collapse on RL fine-tuning data distribution": the
  full spaCy pipeline (tok2vec, tagger, parser, NER, lemmatizer) called once per text,
  ``nlp(text)`` in a loop, plus VADER and the same per-text features. It is timed on the first
  1,000 texts and **extrapolated** to 20,000 (it would take minutes);
- spaCy's own multiprocessing (``nlp.pipe(n_process=2)``, parser and NER disabled, docs sent back
  to the parent), timed on 3,000 texts, the road crowdtune did not take;
- crowdtune's :func:`~crowdtune.curation.linguistic.text_features` (parser and NER disabled,
  rule-based sentencizer, ``n_process=2`` workers returning only numbers and lemmas) on all
  20,000 texts.

Texts per second for each, by wall clock and projected on idle cores from the CPU time used
(this process and its worker processes): on a machine whose cores are shared with other jobs the
wall clock understates what the code does, so both are printed with the load average. The ratio
compares the projected rates (the anchor on one core: it uses one process). Target (2 cores):
crowdtune ≥ 1,000 texts/s. Model loading is outside the timings (done once before). Run with
``make bench`` or ``python benchmarks/bench_distribution.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable

import numpy as np

from crowdtune.curation.linguistic import (
    _N_COLUMNS,
    SPACY_MODEL,
    _doc_row,
    _vader,
    load_pipeline,
    text_features,
)
from crowdtune.datasets.registry import load_texts

TARGET = 1000.0


def naive(texts: list[str]) -> float:
    """The published approach: the full pipeline, one ``nlp(text)`` call per text; seconds."""
    import spacy

    nlp = spacy.load(SPACY_MODEL)  # parser and NER included; sentences from the parser
    vader = _vader()
    rows = np.full((len(texts), _N_COLUMNS), np.nan)
    nlp("warm up")
    start = time.perf_counter()
    for i, text in enumerate(texts):
        doc = nlp(text)
        _doc_row(doc, rows[i])
        scores = vader.polarity_scores(text)
        rows[i, 5:9] = scores["compound"], scores["pos"], scores["neg"], scores["neu"]
    return time.perf_counter() - start


def spacy_multiprocessing(texts: list[str], n_process: int) -> float:
    """spaCy's ``nlp.pipe(n_process=...)`` with docs sent back to this process; seconds."""
    nlp = load_pipeline()
    vader = _vader()
    rows = np.full((len(texts), _N_COLUMNS), np.nan)
    start = time.perf_counter()
    for i, doc in enumerate(nlp.pipe(texts, batch_size=256, n_process=n_process)):
        _doc_row(doc, rows[i])
        scores = vader.polarity_scores(texts[i])
        rows[i, 5:9] = scores["compound"], scores["pos"], scores["neg"], scores["neu"]
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``work()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    work()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def line(label: str, n: int, wall: float, cpu: float, cores: int, anchor: float | None) -> float:
    """Print one row; return the rate projected on ``cores`` idle cores (n / (CPU s / cores))."""
    rate = n / wall
    projected = n / max(cpu / cores, wall / 4)  # never more than 4x the measured wall rate
    ratio = f"{projected / anchor:6.1f}x" if anchor else "   1.0x"
    print(f"  {label:<46} {n:>7,} texts {wall:7.2f} s wall {cpu:7.2f} s CPU  {rate:7,.0f} /s wall"
          f"  {projected:7,.0f} /s on {cores} idle cores  {ratio}")  # fmt: skip
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--naive-texts", type=int, default=1_000)
    parser.add_argument("--spacy-mp-texts", type=int, default=3_000)
    parser.add_argument("--n-process", type=int, default=2)
    args = parser.parse_args()

    texts = load_texts("@goemotions:train")["text"].tolist()[: args.texts]
    print(
        f"\nLinguistic features of {len(texts):,} GoEmotions train texts "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start)"
    )
    load_pipeline()
    naive_texts = texts[: args.naive_texts]
    wall, cpu = timed(lambda: naive(naive_texts))
    anchor = line("anchor: full pipeline, nlp(text) per text", len(naive_texts), wall, cpu, 1, None)
    print(f"  {'':<46} -> {len(texts) * wall / len(naive_texts):,.0f} s wall for {len(texts):,} "
          "texts (extrapolated from the timed subset; one process, so one core)")  # fmt: skip
    subset = texts[: args.spacy_mp_texts]
    wall, cpu = timed(lambda: spacy_multiprocessing(subset, args.n_process))
    line(f"spaCy nlp.pipe(n_process={args.n_process}), no parser/NER", len(subset), wall, cpu,
         args.n_process, anchor)  # fmt: skip
    wall, cpu = timed(lambda: text_features(texts, n_process=args.n_process))
    rate = line(f"crowdtune text_features(n_process={args.n_process})", len(texts), wall, cpu,
                args.n_process, anchor)  # fmt: skip
    print(
        f"  target: >= {TARGET:,.0f} texts/s on 2 cores -> {len(texts) / wall:,.0f} texts/s "
        f"measured, {rate:,.0f} projected on 2 idle cores from CPU time "
        f"({'met' if rate >= TARGET else 'NOT met'}; load average {os.getloadavg()[0]:.2f} at end; "
        "the projection assumes the work splits evenly over the cores)"
    )


if __name__ == "__main__":
    main()
