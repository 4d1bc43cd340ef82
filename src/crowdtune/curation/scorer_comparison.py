"""Instruction-quality scorers side by side on CaR's expert test pairs: the length rule against the
embedding scorer with a linear and a GBDT model (``crowdtune demo``'s curation table)."""

from __future__ import annotations

from typing import Any

from crowdtune.curation.scoring import evaluate_on_car


def compare_quality_scorers(*, encoder: str = "m2v", seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`~crowdtune.curation.scoring.evaluate_on_car` of each scorer, by label.

    Parameters
    ----------
    encoder
        The embedding scorer's embeddings: ``m2v`` (model2vec, seconds; the default here) or
        ``minilm`` (the published embedding; about 13 minutes to embed CaR once on 2 cores).
    seed
        Seeds the scorers and the bootstrap.

    Returns
    -------
    dict
        ``"length"``, then ``"embedding (<encoder>, linear)"`` and ``"embedding (<encoder>,
        gbdt)"``, each with :func:`evaluate_on_car`'s keys (``accuracy``, ``ci_low``, ``ci_high``,
        ``accuracy_longer_worse``, ``n_longer_worse`` ...).
    """
    embedding = {
        f"embedding ({encoder}, {model})": evaluate_on_car(
            "embedding", seed=seed, params={"encoder": encoder, "model": model}
        )
        for model in ("linear", "gbdt")
    }
    return {"length": evaluate_on_car("length", seed=seed), **embedding}
