"""The vectorised Crowd-SFT simulation: the model as a point in a vector space, many seeded runs.

- :mod:`~crowdtune.crowd.simulation.rounds`: the round engine, vectorised over a batch of runs
  (:class:`RoundConfig`, :func:`run_rounds`);
- :mod:`~crowdtune.crowd.simulation.trace`: what one traced run leaves for drawing;
- :mod:`~crowdtune.crowd.simulation.experiments`: seeded grouping experiments on MovieLens or
  synthetic crowds (:class:`CrowdSpec`, :func:`simulate_grouping`);
- :mod:`~crowdtune.crowd.simulation.summary`: means with intervals over runs, bands per round;
- :mod:`~crowdtune.crowd.simulation.credit`: how well point schemes track Shapley values;
- :mod:`~crowdtune.crowd.simulation.sweep`: parameter sweeps on processes or Ray.

The grouping strategies and point schemes it uses are shared with rounds on collected feedback
(:mod:`crowdtune.crowd.grouping`, :mod:`crowdtune.crowd.points`); :mod:`crowdtune.crowd` exports
the public names.
"""
