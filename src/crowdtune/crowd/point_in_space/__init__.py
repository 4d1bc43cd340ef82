"""The point-in-space experiment with real language models: single-model SFT against competitive
selection, and the ablation that separates selection from sequential training.

The published Crowd-SFT experiment fine-tuned gpt-3.5-turbo toward an emotion target. A model's
*point* is the mean 28-dimensional GoEmotions score vector of its generations for the prompt
"write a reddit comment." (:func:`crowdtune.spaces.emotions.emotion_point`); the *target* is the
GoEmotions test sentence scoring highest on the emotion plus its 100 nearest neighbours
(:func:`crowdtune.spaces.emotions.emotion_target`). It reported a mean distance over 28 emotions
of 0.609 for single-model training against 0.448 for competitive selection, from one run per
emotion, with the winner scored on the generations that picked it. Here, per replicate:

``single``
    SFT of the base model on the ``k`` training sentences nearest the target centre, for each
    ``k`` of ``k_single`` (published 33, 66, 100). Plotted at generation ``i`` for the ``i``-th
    ``k``.
``competitive``
    ``generations`` rounds (published 3). In round ``g``, ``candidates`` LoRA candidates (3)
    start from the previous winner (round 1: the base model) and train on disjoint random
    subsets of the training pool of ``subset_sizes[g]`` sentences each (33, 22, 15); each
    candidate samples ``n_samples`` *selection* generations and the one whose point lies
    nearest the centre wins. The winner is reported on ``n_samples`` *fresh* generations drawn
    with other seeds, so the reported distance is not biased by the selection; the selection
    distance of the winner is kept too (``selection_distance``) to show that bias.
``random``
    The ablation: the same schedule (the same subsets, seeds and candidates while the lineage is
    the same), but the winner is drawn at random. Competitive minus random is the effect of
    selection; random minus single is the effect of sequential training on fresh subsets.

The *training pool* is the ``max(k_single)`` GoEmotions **train** sentences nearest the target
centre (Euclidean in score space), scored by the same classifier; the target itself comes from
the test split, so no training sentence is a target member. Each round draws a fresh random
partition of that pool, so competitive and random candidates see the same total data as
``single`` at its largest ``k``.

Every distance is the Euclidean distance of a model's point to the target centre; each row also
carries a 95 % bootstrap interval over its ``n_samples`` generations (the sampling noise of one
model). Across replicates, :func:`summarize_point_in_space` gives Student-t 95 % intervals of the
mean (:func:`crowdtune.stats.mean_ci`) and of the paired differences between arms.

The *target band* on a distance plot (:func:`target_distance_band`): the 25-75 % range of the
distance to the centre of the mean point of ``n_samples`` sentences drawn from the 101 target
sentences, i.e. where a model that wrote exactly like the target would land with the same
number of generations. (The per-emotion 25-75 % band of the target is in ``target.json``.)

The experiment is written against three functions, so its logic is tested exactly with fakes:
``train(base, texts, seed, name) -> model``, ``sample(model, n, seed) -> texts`` and
``score(texts) -> (n, 28)``. :func:`run_point_in_space` wires them to TRL (``run_sft`` with a
LoRA adapter per candidate, each adapter trained on top of the merged previous winner), batched
sampling with transformers and the default emotion classifier.

Modules: :mod:`~crowdtune.crowd.point_in_space.arms` (settings, training pool, target band, one
replicate of the arms), :mod:`~crowdtune.crowd.point_in_space.summary` (over replicates and
across emotions), :mod:`~crowdtune.crowd.point_in_space.experiment` (the run with real models,
which computes and returns) and :mod:`~crowdtune.crowd.point_in_space.files` (the edge that writes
a run's files, :func:`record_point_in_space`, and reads a finished one back).
"""

from crowdtune.crowd.point_in_space.arms import (
    ARMS,
    PROMPT,
    PointInSpaceConfig,
    run_arms,
    target_distance_band,
    training_pool,
    trainings_per_replicate,
)
from crowdtune.crowd.point_in_space.experiment import (
    PointInSpaceResult,
    Recorder,
    TextSampler,
    run_point_in_space,
)
from crowdtune.crowd.point_in_space.files import (
    PointInSpaceFiles,
    finished_run,
    record_point_in_space,
)
from crowdtune.crowd.point_in_space.summary import summarize_emotions, summarize_point_in_space

__all__ = [
    "ARMS",
    "PROMPT",
    "PointInSpaceConfig",
    "PointInSpaceFiles",
    "PointInSpaceResult",
    "Recorder",
    "TextSampler",
    "finished_run",
    "record_point_in_space",
    "run_arms",
    "run_point_in_space",
    "summarize_emotions",
    "summarize_point_in_space",
    "target_distance_band",
    "training_pool",
    "trainings_per_replicate",
]
