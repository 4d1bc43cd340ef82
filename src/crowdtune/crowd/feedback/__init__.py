"""Crowd-SFT rounds on collected feedback: one round at a time, on a project's real votes.

- :mod:`~crowdtune.crowd.feedback.round`: the round (:func:`run_feedback_round`), its settings
  and its recorded outcome;
- :mod:`~crowdtune.crowd.feedback.learner`: the preference model a group's votes train, scored
  on the gold items;
- :mod:`~crowdtune.crowd.feedback.credit`: the points each scheme pays;
- :mod:`~crowdtune.crowd.feedback.weights`: how much each vote counts (``vote_weights``: alike,
  or by its annotator's Dawid–Skene reliability).
- :mod:`~crowdtune.crowd.feedback.lm_round`: a round whose candidates are language models
  (:func:`~crowdtune.crowd.feedback.lm_round.run_model_round`: SFT on revisions or DPO on votes,
  one LoRA adapter per group), evaluated on gold items
  (:mod:`~crowdtune.crowd.feedback.lm_evaluation`) and credited by
  :mod:`~crowdtune.crowd.feedback.lm_credit`.

The grouping strategies and the ``rank`` and ``marginal`` point schemes are the simulation's
(:mod:`crowdtune.crowd.grouping`, :mod:`crowdtune.crowd.points`).
"""
