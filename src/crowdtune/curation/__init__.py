"""Instruction-data curation: what feedback data is worth training on.

- :mod:`~crowdtune.curation.quality`: instruction quality scorers trained pairwise on CaR's
  expert revisions (length baseline, MiniLM embedding scorer with text features).
- :mod:`~crowdtune.curation.cross_encoder`: the LoRA cross-encoder scorer (on
  :mod:`crowdtune.training.lora`).
- :mod:`~crowdtune.curation.scoring`: the scorers by name, saved and loaded, evaluated on CaR's
  expert test pairs, and the default scorer (fitted once, cached).
- :mod:`~crowdtune.curation.select`: CaR selection (embed, PCA to 95% variance, k-means with
  k = round(sqrt(n/2)), top-n by score plus the best items of every cluster) and diversity.
- :mod:`~crowdtune.curation.linguistic`: linguistic features of texts (spaCy POS and lemmas,
  VADER sentiment, repetition).
- :mod:`~crowdtune.curation.divergence`: Jensen–Shannon divergence of pooled count distributions
  with a bootstrap interval and a permutation baseline.
- :mod:`~crowdtune.curation.distribution`: a training and a test set compared (per-feature tests
  with effect sizes, divergences, mismatched texts, reward/human score agreement).

Submodules are imported on use: the distribution analysis loads spaCy, the scorers torch.
"""
