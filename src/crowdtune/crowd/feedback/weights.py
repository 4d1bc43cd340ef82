"""How much a round trusts each vote: every vote alike, or by its annotator's reliability.

A round's ``vote_weights`` setting (:class:`~crowdtune.crowd.feedback.round.RoundSettings`,
:class:`~crowdtune.crowd.feedback.lm_round.ModelRoundSettings`, the API's ``RoundIn``):

``none`` (default)
    every vote weighs 1, as majority vote would have it.
``dawid-skene``
    Dawid–Skene (:func:`~crowdtune.preference.reliability.dawid_skene`) is fitted on all of the
    project's votes, and each vote weighs what its annotator's reliability weight is
    (:func:`~crowdtune.preference.reliability.reliability_weights`): Cohen's kappa between the
    annotator and the latent true label, ``max(0, (accuracy - chance) / (1 - chance))``. A
    reliable annotator's votes weigh near 1; those of a random voter, of someone who always
    gives the same answer, or of a contrarian (right less often than chance) weigh about 0 or
    exactly 0. The fit reads the votes on gold items too, but never the gold answers: it needs
    no truth, and more shared items estimate each annotator better.

What a round does with the weights: a preference round trains each candidate with them as
sample weights (a vote of weight 0 is as if not given; a group whose votes all weigh 0 trains
no candidate); a DPO round keeps a vote when its weight is above 0 and drops it otherwise,
since TRL's DPO trainer takes no per-example weight.
"""

from __future__ import annotations

import pandas as pd

from crowdtune.preference.reliability import dawid_skene, reliability_weights
from crowdtune.validation import check_choice

#: The ``vote_weights`` settings of a round (see the module docstring).
VOTE_WEIGHTS = ("none", "dawid-skene")


def annotator_weights(votes: pd.DataFrame, method: str) -> dict[str, float] | None:
    """Each annotator's vote weight under ``method`` (see the module docstring), from the
    votes of a :func:`~crowdtune.records.comparisons_frame` (rows without an annotator are
    left out); None for ``"none"``: every vote weighs 1.

    Raises
    ------
    ValueError
        An unknown ``method``, or no votes with an annotator to fit Dawid–Skene on.
    """
    check_choice(method, VOTE_WEIGHTS, "vote weights")
    if method == "none":
        return None
    named = votes[votes["annotator"].notna()]
    weights = reliability_weights(dawid_skene(named, n_bootstrap=0))
    return {str(name): float(weight) for name, weight in weights.items()}
