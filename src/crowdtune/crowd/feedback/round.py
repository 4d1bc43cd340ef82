"""One Crowd-SFT round on collected pairwise feedback: groups, candidates, a winner, points.

The vector simulation (:mod:`crowdtune.crowd.simulation`) runs thousands of rounds on vectors;
this module runs **one** round on real votes, the way a project does after collecting feedback:

1. Votes on **gold items** (items with a known answer, matched by their texts in either order)
   are set aside: the gold items are the evaluation set, and training on votes about them would
   leak it. Everyone with at least one other vote is a contributor of the round.
2. The grouping strategy (:func:`crowdtune.crowd.grouping.get_strategy`) splits the contributors
   into ``n_groups`` groups, using the points of earlier rounds (epsilon-greedy and interleaved
   sort by them).
3. Each group's votes train a candidate preference model (the round's
   :class:`~crowdtune.crowd.feedback.learner.GoldLearner`, through
   :func:`~crowdtune.preference.registry.make_model`, from scratch: a preference model has no
   warm start). A group with fewer than
   ``min_votes`` votes, or with only ties, gets no candidate and a reason.
4. Candidates are scored on the gold items by their mean log loss (lower is better; the score is
   its negative). The best candidate wins; the round **improved** only if it beats the *base*:
   the current model, i.e. the log loss the last round left (its winner's if it improved, else
   its own base) when the gold items are the same, else the no-information baseline (1/3 for each
   outcome, log loss ``log 3``).
5. The point scheme pays the contributors (:func:`~crowdtune.crowd.feedback.credit.award_points`).

Point schemes (:data:`ROUND_SCHEMES`):

``rank`` (published)
    when the round improved, every member of the group ranked ``r`` (0 = winner) gets ``G - r``;
    members of a group without a candidate get nothing. Computed by
    :class:`crowdtune.crowd.points.RankPoints`.
``marginal``
    every member gets the group's gain over the base in nats (``base - log_loss``), every round;
    :class:`crowdtune.crowd.points.MarginalPoints`.
``leave-one-out``
    each member gets what its group's candidate loses without the member's votes, every round
    (one extra fit per member of a group with a candidate).
``shapley``
    each group is a cooperative game of its members, ``v(S)`` = the score of a candidate trained
    on the votes of ``S`` (the base when ``S`` cannot train one, ``v(∅)`` = base); a member's
    points are its Shapley value, so a group's points add up to its gain over the base (paid
    every round, like ``marginal``, which it splits among the members).
    Exact (:func:`~crowdtune.valuation.exact_shapley`, ``2^n`` fits) for groups of at most
    :data:`~crowdtune.crowd.feedback.credit.EXACT_SHAPLEY_PLAYERS`, else
    :func:`~crowdtune.valuation.permutation_shapley` with a budget of ``shapley_evaluations``
    coalitions.

The simulation's ``regression`` scheme is not offered: it learns from every round of a run in one
process and would have to replay all stored rounds; the centroid-specific leave-one-out of
:mod:`crowdtune.crowd.points` does not apply to preference models, so leave-one-out here goes
through :class:`~crowdtune.valuation.LearnerGame` like the Shapley scheme.

>>> from crowdtune.records import Comparison
>>> def item(i, winner, who=None):
...     a, b = "x" * (5 + i % 7), "y" * (20 + i % 5)  # b is always the longer answer
...     return Comparison(id=f"{i}/{who}", prompt=(f"q{i}",), response_a=(a,), response_b=(b,),
...                       verdict=winner, annotator=who)
>>> gold = [item(i, "b") for i in range(8)]
>>> votes = [item(i, "b" if who.startswith("fair") else "a", who)
...          for who in ("fair-1", "fair-2", "contrary-1", "contrary-2") for i in range(8, 20)]
>>> result = run_feedback_round(votes, gold, settings=RoundSettings(n_groups=4, seed=0))
>>> sorted(result.candidates[result.winner - 1].members)[0].startswith("fair")
True
>>> result.improved, sum(result.points.values())  # rank points: 4 + 3 + 2 + 1
(True, 10.0)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crowdtune.crowd.feedback.credit import award_points
from crowdtune.crowd.feedback.learner import (
    WEIGHT_COLUMN,
    GoldLearner,
    evaluation_fingerprint,
    join_votes,
)
from crowdtune.crowd.feedback.weights import VOTE_WEIGHTS, annotator_weights
from crowdtune.crowd.grouping import STRATEGIES, group_round
from crowdtune.preference.metrics import UNIFORM_LOG_LOSS
from crowdtune.preference.registry import MODELS
from crowdtune.records import Comparison, comparisons_frame
from crowdtune.tables import jsonable
from crowdtune.validation import check_choice

#: How contributors earn points from a round (see the module docstring).
ROUND_SCHEMES = ("rank", "marginal", "leave-one-out", "shapley")
#: Preference models that train in well under a second on a few thousand votes, so a round (and
#: the extra fits of leave-one-out and Shapley points) fits in one web request.
ROUND_MODELS = ("length", "difference-bucket", "features-gbdt")
#: Where the base comes from when there is no comparable current model.
NO_INFORMATION = "no-information baseline (1/3 for each outcome)"


@dataclass(frozen=True)
class RoundSettings:
    """Settings of one round on collected feedback.

    Parameters
    ----------
    n_groups : int, default=4
        Groups (G), at least 1 and at most the number of contributors.
    strategy : {"random", "epsilon-greedy", "interleaved"}, default="random"
        How contributors are grouped (:mod:`crowdtune.crowd.grouping`).
    scheme : {"rank", "marginal", "leave-one-out", "shapley"}, default="rank"
        How contributors earn points.
    model : str, default="length"
        The preference model each group trains (a name of
        :data:`crowdtune.preference.registry.MODELS`; the web API allows :data:`ROUND_MODELS`).
    seed : int, optional
        Seed of every random draw (grouping, model, Shapley sampling); None draws a fresh one,
        which the result records so the round can be repeated.
    min_votes : int, default=5
        Fewest votes a group (or coalition) needs to train a candidate.
    uniform_mix : float, default=0.01
        Every candidate's probabilities are mixed with this share of the uniform distribution
        before scoring. A model whose group never voted a tie predicts P(tie) = 0 and would
        otherwise pay about 36 nats (the clipped log loss) on each gold tie, so one artefact
        would decide the round; with 0.01 a single row costs at most ``log 300`` = 5.7 nats.
    horizon : int, default=10
        Rounds over which epsilon-greedy's exploration decays to its floor (its ``n_rounds``;
        a project has no fixed number of rounds).
    shapley_evaluations : int, default=512
        Coalition budget of permutation sampling for groups larger than
        :data:`EXACT_SHAPLEY_PLAYERS`.
    vote_weights : {"none", "dawid-skene"}, default="none"
        How much each vote counts in training (:mod:`crowdtune.crowd.feedback.weights`):
        alike, or by its annotator's Dawid–Skene reliability weight (fitted on all the votes;
        a contrarian's or a random voter's votes weigh about 0), passed to the candidates'
        fits as sample weights. The round records the weights (``annotator_weights``).
    """

    n_groups: int = 4
    strategy: str = "random"
    scheme: str = "rank"
    model: str = "length"
    seed: int | None = None
    min_votes: int = 5
    uniform_mix: float = 0.01
    horizon: int = 10
    shapley_evaluations: int = 512
    vote_weights: str = "none"

    def __post_init__(self) -> None:
        check_choice(self.strategy, STRATEGIES, "strategy")
        check_choice(self.vote_weights, VOTE_WEIGHTS, "vote weights")
        check_choice(self.scheme, ROUND_SCHEMES, "point scheme")
        check_choice(self.model, MODELS, "preference model")
        for name, low in (("n_groups", 1), ("min_votes", 1), ("horizon", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {self.seed!r}")
        if not 0.0 <= self.uniform_mix < 1.0:
            raise ValueError(f"uniform_mix must be in [0, 1), got {self.uniform_mix!r}")
        if self.shapley_evaluations < 2:
            raise ValueError(
                f"shapley_evaluations must be at least 2, got {self.shapley_evaluations}"
            )


@dataclass(frozen=True)
class CurrentModel:
    """The model a round starts from: its gold log loss and the evaluation it was measured on.

    Attributes
    ----------
    log_loss : float
        Mean gold log loss of the current model.
    evaluation : str
        Fingerprint of the gold items and the scoring (:attr:`FeedbackRound.evaluation`); a base
        measured on other gold items is not comparable and is not used.
    source : str
        Where the model comes from, e.g. "the winner of round 2".
    """

    log_loss: float
    evaluation: str
    source: str

    @classmethod
    def after(cls, details: Mapping[str, Any]) -> CurrentModel:
        """The model a stored round (:meth:`FeedbackRound.to_dict`) left for the next one."""
        model = details["model_after"]
        return cls(float(model["log_loss"]), str(model["evaluation"]), str(model["source"]))


@dataclass(frozen=True)
class Candidate:
    """One group's candidate and its gold scores (``reason`` says why a group has none)."""

    group: int
    members: list[str]
    n_votes: int
    log_loss: float | None = None
    accuracy: float | None = None
    #: 0 = the winner; None without a candidate.
    rank: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ContributorOutcome:
    """A contributor's group, training votes and points this round."""

    contributor: str
    group: int
    votes: int
    points: float


@dataclass(frozen=True)
class FeedbackRound:
    """The outcome of :func:`run_feedback_round`; groups are numbered from 1.

    Attributes
    ----------
    winner : int
        The group of the best candidate.
    improved : bool
        Whether the winner beat the base; the winner then becomes the current model.
    base_log_loss, base_source
        What the candidates had to beat, and where it comes from.
    model_after : dict
        ``log_loss``, ``evaluation`` and ``source`` of the current model after this round (read
        back by :meth:`CurrentModel.after`).
    extra_fits : int
        Models trained for the point scheme beyond the round's own candidates.
    credit_methods : dict
        Group number to the Shapley method used (``shapley`` scheme only).
    annotator_weights : dict, optional
        Each annotator's vote weight in training (``vote_weights="dawid-skene"``; None: every
        vote weighed 1).
    """

    round_number: int
    settings: RoundSettings
    seed: int
    evaluation: str
    n_gold: int
    n_votes: int
    n_training_votes: int
    n_gold_votes_excluded: int
    skipped: list[str]
    base_log_loss: float
    base_source: str
    candidates: list[Candidate]
    contributors: list[ContributorOutcome]
    winner: int
    improved: bool
    model_after: dict[str, Any]
    extra_fits: int = 0
    credit_methods: dict[int, str] = field(default_factory=dict)
    annotator_weights: dict[str, float] | None = None

    @property
    def points(self) -> dict[str, float]:
        """Points this round per contributor."""
        return {c.contributor: c.points for c in self.contributors}

    @property
    def groups(self) -> dict[str, int]:
        """Group of every contributor."""
        return {c.contributor: c.group for c in self.contributors}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: everything needed to show, repeat or continue from the round."""
        settings = asdict(self.settings)
        settings["seed"] = self.seed
        out = {
            "round_number": self.round_number,
            **{k: settings[k] for k in ("strategy", "scheme", "model", "n_groups", "seed")},
            "settings": settings,
            "winner": self.winner,
            "improved": self.improved,
            "base_log_loss": self.base_log_loss,
            "base_source": self.base_source,
            "model_after": self.model_after,
            "evaluation": self.evaluation,
            "n_gold": self.n_gold,
            "n_votes": self.n_votes,
            "n_training_votes": self.n_training_votes,
            "n_gold_votes_excluded": self.n_gold_votes_excluded,
            "skipped": self.skipped,
            "candidates": [asdict(c) for c in self.candidates],
            "contributors": [asdict(c) for c in self.contributors],
            "extra_fits": self.extra_fits,
            "credit_methods": {str(g): m for g, m in self.credit_methods.items()},
            "annotator_weights": self.annotator_weights,
        }
        return jsonable(out)


def _pair_key(comparison: Comparison) -> tuple[tuple[str, ...], ...]:
    return (comparison.prompt, comparison.response_a, comparison.response_b)


def run_feedback_round(
    votes: Sequence[Comparison],
    gold: Sequence[Comparison],
    *,
    points: Mapping[str, float] | None = None,
    settings: RoundSettings | None = None,
    current: CurrentModel | None = None,
    round_index: int = 0,
) -> FeedbackRound:
    """Run one Crowd-SFT round on collected votes (see the module docstring).

    Parameters
    ----------
    votes : sequence of Comparison
        Every vote, each with its ``annotator``; votes on gold items are left out of training.
    gold : sequence of Comparison
        The gold items, each with its known answer as the ``verdict``.
    points : mapping of str to float, optional
        Points of earlier rounds per contributor (missing: 0), for the grouping strategies that
        sort by them.
    settings : RoundSettings, optional
        Defaults: 4 groups, random grouping, rank points, the length model.
    current : CurrentModel, optional
        The model the last round left; used as the base when measured on the same gold items.
    round_index : int, default=0
        How many rounds ran before this one (epsilon-greedy's schedule; the round's number).

    Returns
    -------
    FeedbackRound

    Raises
    ------
    ValueError
        No gold items; a vote without an annotator; fewer contributors than groups; or no group
        could train a candidate (the message gives each group's reason).
    """
    settings = RoundSettings() if settings is None else settings
    if not gold:
        raise ValueError(
            "the project has no gold items: a round scores every candidate on items with a "
            "known answer; import items with a 'gold' answer ('a', 'b' or 'tie') first"
        )
    if unnamed := [v.id for v in votes if not v.annotator]:
        raise ValueError(f"vote {unnamed[0]!r} has no annotator; a round groups votes by annotator")
    gold_pairs = {_pair_key(g) for g in gold} | {_pair_key(g.swapped()) for g in gold}
    training = [v for v in votes if _pair_key(v) not in gold_pairs]
    names = sorted({str(v.annotator) for v in training})
    skipped = sorted({str(v.annotator) for v in votes} - set(names))
    if len(names) < settings.n_groups:
        raise ValueError(
            f"n_groups is {settings.n_groups} but only {len(names)} contributor(s) have votes "
            f"outside the gold items ({len(votes) - len(training)} of {len(votes)} votes are on "
            "gold items); lower n_groups or collect more votes"
        )

    # A drawn seed is kept to 63 bits so that it survives JSON and a BIGINT column.
    seed = secrets.randbits(63) if settings.seed is None else settings.seed
    sequence = np.random.SeedSequence(seed)
    group_stream, model_stream, credit_stream = sequence.spawn(3)
    model_seed = int(model_stream.generate_state(1)[0])

    groups = group_round(
        names,
        points,
        settings.strategy,
        settings.n_groups,
        round_index,
        settings.horizon,
        np.random.default_rng(group_stream),
    )

    frame = comparisons_frame(training)
    weights = annotator_weights(comparisons_frame(votes), settings.vote_weights)
    if weights is not None:  # the learner's fits take the column as sample weights
        frame[WEIGHT_COLUMN] = frame["annotator"].map(weights).to_numpy(dtype=float)
    by_name = {str(name): part for name, part in frame.groupby("annotator")}
    gold_frame = comparisons_frame(gold)
    evaluation = evaluation_fingerprint(gold_frame, settings.uniform_mix)
    if current is not None and current.evaluation == evaluation:
        base_log_loss, base_source = current.log_loss, current.source
    elif current is not None:
        base_log_loss = UNIFORM_LOG_LOSS
        base_source = f"{NO_INFORMATION}; the gold items changed since {current.source}"
    else:
        base_log_loss, base_source = UNIFORM_LOG_LOSS, NO_INFORMATION
    learner = GoldLearner(
        settings.model,
        gold_frame,
        base_log_loss=base_log_loss,
        min_votes=settings.min_votes,
        uniform_mix=settings.uniform_mix,
        seed=model_seed,
    )

    members = [
        [n for n, g in zip(names, groups, strict=True) if g == k] for k in range(settings.n_groups)
    ]
    models: list[Any] = []
    losses: list[float | None] = []
    reasons: list[str | None] = []
    for group_members in members:
        if not group_members:  # interleaved grouping can leave a group empty when G > N / 2
            models.append(None)
            losses.append(None)
            reasons.append("no members")
            continue
        group_frame = join_votes([by_name[n] for n in group_members])
        model = learner.fit(None, group_frame)
        models.append(model)
        losses.append(None if model is None else learner.log_loss(model))
        reasons.append(learner.why_not(group_frame))
    scored = {k: loss for k, loss in enumerate(losses) if loss is not None}
    if not scored:
        problems = "; ".join(f"group {k + 1}: {r}" for k, r in enumerate(reasons))
        raise ValueError(f"no group could train a candidate ({problems}); collect more votes")
    order = sorted(scored, key=lambda k: (scored[k], k))
    rank_of_group = np.full(settings.n_groups, settings.n_groups)  # no candidate: no rank points
    rank_of_group[order] = np.arange(len(order))
    winner = order[0]
    improved = scored[winner] < base_log_loss
    gains = np.array([0.0 if loss is None else base_log_loss - loss for loss in losses])

    fits_before = learner.n_fits
    increments, methods = award_points(
        settings.scheme,
        learner,
        names=names,
        members=members,
        by_name=by_name,
        groups=groups,
        rank_of_group=rank_of_group,
        improved=improved,
        gains=gains,
        stream=credit_stream,
        shapley_evaluations=settings.shapley_evaluations,
    )
    votes_of = {name: len(by_name[name]) for name in names}
    contributors = [
        ContributorOutcome(name, int(group) + 1, votes_of[name], float(points_now))
        for name, group, points_now in zip(names, groups, increments, strict=True)
    ]
    candidates = [
        Candidate(
            group=k + 1,
            members=members[k],
            n_votes=sum(votes_of[n] for n in members[k]),
            log_loss=losses[k],
            accuracy=None if models[k] is None else learner.accuracy(models[k]),
            rank=int(rank_of_group[k]) if losses[k] is not None else None,
            reason=reasons[k],
        )
        for k in range(settings.n_groups)
    ]
    number = round_index + 1
    after = (
        {"log_loss": scored[winner], "source": f"the winner of round {number} (group {winner + 1})"}
        if improved
        else {"log_loss": base_log_loss, "source": base_source}
    )
    return FeedbackRound(
        round_number=number,
        settings=settings,
        seed=seed,
        evaluation=evaluation,
        n_gold=len(gold),
        n_votes=len(votes),
        n_training_votes=len(training),
        n_gold_votes_excluded=len(votes) - len(training),
        skipped=skipped,
        base_log_loss=base_log_loss,
        base_source=base_source,
        candidates=candidates,
        contributors=contributors,
        winner=winner + 1,
        improved=improved,
        model_after={**after, "evaluation": evaluation},
        extra_fits=learner.n_fits - fits_before,
        credit_methods=methods,
        annotator_weights=weights,
    )


def accumulated_points(rounds: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Every contributor's points summed over stored rounds (:meth:`FeedbackRound.to_dict`, or a
    round of language models). Points of ``None`` (a member a scheme left unscored, as
    leave-one-out does past its budget of extra trainings) add nothing: a contributor with
    no scored points is not in the totals."""
    totals: dict[str, float] = {}
    for details in rounds:
        for row in details.get("contributors", []):
            if row.get("points") is not None:
                name = row["contributor"]
                totals[name] = totals.get(name, 0.0) + float(row["points"])
    return totals
