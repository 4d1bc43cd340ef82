"""The Crowd-SFT round engine for the point-in-space simulation, vectorised over runs.

One round, for every run of a batch at once:

1. the grouping strategy splits the users into G groups;
2. each group's centroid, weighted by ``points ** weight_power``, is the group's feedback, and the
   learner turns it into a candidate ``m + delta * (c_g - m)``;
3. the evaluator scores the candidates (optionally with Gaussian noise) and ranks them; the model
   moves to the best one only if it beats the current model; with probability ``error_prob`` the
   evaluator swaps the best candidate with a random other one (published: 0.05; empty groups,
   possible with interleaved grouping when G > N/2, have no candidate and are never chosen);
4. the point scheme pays the users.

Group sums are matrix products with a one-hot group matrix: no Python loop over users or groups,
only over rounds. Each run draws all its randomness from its own ``numpy.random.Generator`` in a
fixed layout (per round: ``n_users`` uniform keys, 3 uniform coins, ``n_groups`` normals), so a run
gives the same numbers whatever batch or worker it runs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crowdtune.crowd.grouping import SCHEDULES, STRATEGIES, RoundRandomness, get_strategy
from crowdtune.crowd.points import SCHEMES, CentroidOutcome, PointScheme, get_scheme
from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.spaces.metrics import METRICS, l2_score
from crowdtune.validation import check_choice
from crowdtune.valuation.learners import PointLearner


@dataclass(frozen=True)
class RoundConfig:
    """Settings of Crowd-SFT rounds; the defaults are the published ones.

    Parameters
    ----------
    n_groups : int, default=4
        Groups per round (G).
    n_rounds : int, default=100
        Rounds per run (R).
    strategy : {"random", "epsilon-greedy", "interleaved"}, default="random"
    metric : {"l2", "l1", "dot", "cosine"}, default="l2"
    scheme : {"rank", "marginal", "regression", "leave-one-out"}, default="rank"
        How users earn points (:mod:`crowdtune.crowd.points`). ``rank`` (published): every
        member of the group ranked ``r`` gets ``G - r`` when the model moves. ``marginal``: every
        member gets the group's gain, every round. ``regression``: each user's own contribution,
        estimated by ridge regression of every group's measured gain on its members over all
        rounds so far (no extra evaluations). ``leave-one-out``: each member gets what its
        group's candidate loses without it, every round (one extra evaluation per member of
        every group of two or more).
    delta : float, default=0.1
        Step toward the group centroid, in (0, 1].
    weight_power : float, default=2.0
        Centroids weight users by ``max(points, 0) ** weight_power`` (p). A group whose weights are
        all zero falls back to its unweighted centroid.
    error_prob : float, default=0.05
        Probability that the evaluator swaps the best candidate with a random other one.
    score_noise : float, default=0.0
        Standard deviation of Gaussian noise the evaluator adds to candidate scores. The move
        happens when the best observed score beats the current model's (noise-free) score.
    explore_floor : float, default=0.4
        Epsilon-greedy's minimum probability of grouping at random.
    explore_schedule : {"linear", "exponential", "constant"}, default="linear"
    initial_points : float, default=1.0
        Every user's points before the first round (published: 1).
    """

    n_groups: int = 4
    n_rounds: int = 100
    strategy: str = "random"
    metric: str = "l2"
    scheme: str = "rank"
    delta: float = 0.1
    weight_power: float = 2.0
    error_prob: float = 0.05
    score_noise: float = 0.0
    explore_floor: float = 0.4
    explore_schedule: str = "linear"
    initial_points: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.strategy, STRATEGIES, "strategy")
        check_choice(self.metric, tuple(METRICS), "metric")
        check_choice(self.scheme, SCHEMES, "point scheme")
        check_choice(self.explore_schedule, SCHEDULES, "explore schedule")
        if self.n_groups < 1:
            raise ValueError(f"groups must be at least 1, got {self.n_groups}")
        if self.n_rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.n_rounds}")
        if not 0.0 < self.delta <= 1.0:
            raise ValueError(f"delta must be in (0, 1], got {self.delta}")
        if not 0.0 <= self.error_prob <= 1.0:
            raise ValueError(f"error_prob must be in [0, 1], got {self.error_prob}")
        if not 0.0 <= self.explore_floor <= 1.0:
            raise ValueError(f"explore_floor must be in [0, 1], got {self.explore_floor}")
        if self.score_noise < 0 or self.weight_power < 0:
            raise ValueError("score_noise and weight_power must be non-negative")

    def check_users(self, n_users: int) -> None:
        """Raise ``ValueError`` when ``n_users`` cannot be split into ``n_groups`` groups."""
        if self.n_groups > n_users:
            raise ValueError(
                f"groups ({self.n_groups}) cannot exceed users ({n_users}): "
                "every group needs a member"
            )


@dataclass
class RoundsResult:
    """What a batch of runs produced.

    Attributes
    ----------
    distances : ndarray of shape (n_runs, n_rounds + 1)
        L2 distance from the model to the expert after each round (column 0: the start).
    points : ndarray of shape (n_runs, n_users)
        Final points.
    improving_rounds : ndarray of int, shape (n_runs,)
        Rounds in which the model moved.
    extra_evaluations : ndarray of int, shape (n_runs,)
        Candidate scores the point scheme asked for beyond the G per round the rounds themselves
        cost (0 except for ``leave-one-out``).
    traces : dict of int to RunTrace
        Full traces of the runs (by position in the batch) that were asked for.
    """

    distances: np.ndarray
    points: np.ndarray
    improving_rounds: np.ndarray
    extra_evaluations: np.ndarray
    traces: dict[int, RunTrace] = field(default_factory=dict)


def draw_run_randomness(
    rngs: Sequence[np.random.Generator], n_rounds: int, n_users: int, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every random number each run will use: keys (B, R, N), coins (B, R, 3), noise (B, R, G)."""
    keys = np.stack([rng.random((n_rounds, n_users)) for rng in rngs])
    coins = np.stack([rng.random((n_rounds, 3)) for rng in rngs])
    noise = np.stack([rng.standard_normal((n_rounds, n_groups)) for rng in rngs])
    return keys, coins, noise


def group_centroids(
    users: np.ndarray, groups: np.ndarray, weights: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centroid of every group of every run, and the group sizes.

    ``users`` (B, N, d), ``groups`` (B, N) int, ``weights`` (B, N) -> centroids (B, G, d) and
    sizes (B, G). A group with zero total weight gets its unweighted centroid; an empty group
    gets NaN.
    """
    one_hot = (groups[:, :, None] == np.arange(n_groups)).astype(users.dtype)  # (B, N, G)
    sizes = one_hot.sum(axis=1)
    weighted = one_hot * weights[:, :, None]
    totals = weighted.sum(axis=1)  # (B, G)
    zero = totals <= 0
    if zero.any():
        weighted = np.where(zero[:, None, :], one_hot, weighted)
        totals = np.where(zero, sizes, totals)
    sums = np.matmul(weighted.transpose(0, 2, 1), users)  # (B, G, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / totals[:, :, None], sizes


def run_rounds(
    users: np.ndarray,
    expert: np.ndarray,
    start: np.ndarray,
    rngs: Sequence[np.random.Generator],
    config: RoundConfig,
    *,
    trace: Sequence[int] = (),
    scheme: PointScheme | None = None,
) -> RoundsResult:
    """Simulate ``config.n_rounds`` rounds for a batch of runs.

    Parameters
    ----------
    users : ndarray of shape (n_runs, n_users, n_dims)
    expert : ndarray of shape (n_runs, n_dims)
    start : ndarray of shape (n_runs, n_dims)
        The model's starting point in each run.
    rngs : sequence of numpy.random.Generator, one per run
    config : RoundConfig
    trace : sequence of int
        Positions in the batch whose full trace (groups, model path, points) to keep.
    scheme : PointScheme, optional
        A point scheme object to use instead of ``get_scheme(config.scheme)``, for settings the
        config does not carry (``RegressionPoints(ridge=...)``, say).
    """
    n_runs, n_users, _ = users.shape
    if len(rngs) != n_runs or expert.shape[0] != n_runs or start.shape[0] != n_runs:
        raise ValueError("users, expert, start and rngs must all have one entry per run")
    config.check_users(n_users)
    n_groups, n_rounds = config.n_groups, config.n_rounds
    group_strategy = get_strategy(
        config.strategy, floor=config.explore_floor, schedule=config.explore_schedule
    )
    scheme = get_scheme(config.scheme) if scheme is None else scheme
    scheme.start(n_runs, n_users)
    learner = PointLearner(expert[:, None, :], metric=config.metric, delta=config.delta)
    keys, coins, noise = draw_run_randomness(rngs, n_rounds, n_users, n_groups)
    batch = np.arange(n_runs)

    model = start.astype(float).copy()
    points = np.full((n_runs, n_users), float(config.initial_points))
    distances = np.empty((n_runs, n_rounds + 1))
    distances[:, 0] = -l2_score(model, expert)
    improving = np.zeros(n_runs, dtype=int)
    kept: dict[int, tuple[list[np.ndarray], list[np.ndarray], list[int], list[np.ndarray]]] = {
        i: ([model[i].copy()], [], [], [points[i].copy()]) for i in trace
    }

    for t in range(n_rounds):
        groups = group_strategy(
            points, RoundRandomness(keys[:, t], coins[:, t, 0]), n_groups, t, n_rounds
        )
        weights = np.maximum(points, 0.0) ** config.weight_power
        centroids, sizes = group_centroids(users, groups, weights, n_groups)
        candidates = learner.fit(model[:, None, :], centroids)  # (B, G, d)
        true_scores = learner.score(candidates)  # (B, G)
        current = learner.score(model[:, None, :])[:, 0]  # (B,)
        observed = true_scores + config.score_noise * noise[:, t]
        observed = np.where(sizes > 0, observed, -np.inf)  # an empty group never wins

        order = np.argsort(-observed, axis=1, kind="stable")  # evaluator's ranking, best first
        improved = observed[batch, order[:, 0]] > current
        # The evaluator's error swaps the best with another real candidate: empty groups have
        # none and are ranked last, so the partner is drawn from the first `real` positions.
        real = (sizes > 0).sum(axis=1)
        swap = improved & (coins[:, t, 1] < config.error_prob) & (real > 1)
        other = 1 + np.floor(coins[:, t, 2] * (real - 1)).astype(int)
        rows = batch[swap]
        order[rows, 0], order[rows, other[swap]] = order[rows, other[swap]], order[rows, 0]
        chosen = order[:, 0]
        rank_of_group = np.argsort(order, axis=1)
        previous = model
        model = np.where(improved[:, None], candidates[batch, chosen], model)

        gains = np.where(sizes > 0, true_scores - current[:, None], 0.0)
        observed_gains = np.where(sizes > 0, observed - current[:, None], 0.0)
        outcome = CentroidOutcome(
            groups=groups,
            rank_of_group=rank_of_group,
            improved=improved,
            gains=gains,
            observed_gains=observed_gains,
            users=users,
            model=previous,
            weights=weights,
            learner=learner,
        )
        points = points + scheme.award(outcome)
        improving += improved
        distances[:, t + 1] = -l2_score(model, expert)
        for i, (path, group_log, chosen_log, points_log) in kept.items():
            path.append(model[i].copy())
            group_log.append(groups[i].copy())
            chosen_log.append(int(chosen[i]) if improved[i] else -1)
            points_log.append(points[i].copy())

    traces = {
        i: RunTrace(
            strategy=config.strategy,
            metric=config.metric,
            users=users[i].copy(),
            expert=expert[i].copy(),
            model_path=np.array(path),
            groups=np.array(group_log),
            chosen=np.array(chosen_log),
            points=np.array(points_log),
        )
        for i, (path, group_log, chosen_log, points_log) in kept.items()
    }
    extra = np.asarray(scheme.extra_evaluations, dtype=int).copy()
    return RoundsResult(distances, points, improving, extra, traces)
