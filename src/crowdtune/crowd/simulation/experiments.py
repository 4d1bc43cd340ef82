"""Grouping experiments: many seeded runs of Crowd-SFT rounds on a crowd of user vectors.

The published setting (Crowd-SFT, "user grouping evaluation"): MovieLens ml-latest-small users as
points in genre space (mean rating per genre, unrated = 0), N users plus one random user as the
expert, the model starting uniform in [0, 5]^d, G = 4 groups, 100 rounds, delta = 0.1, points
weighted by points^2, evaluator error 0.05, rank points.

Seeding: run ``i`` of an experiment with seed ``s`` takes its numbers from
``SeedSequence(s, spawn_key=(i,))``, split into a setup stream (which users, which expert, where
the model starts, then, only when the crowd has adversaries, which users they replace and with
what) and a dynamics stream (groups, evaluator errors). Runs with the same index therefore share
their setup across strategies, metrics and point schemes (a paired comparison), and a run gives
the same numbers alone, in a batch, or in another worker process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdtune.crowd.simulation.rounds import RoundConfig, RoundsResult, run_rounds
from crowdtune.crowd.simulation.summary import first_round_within, summarize_runs
from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.datasets import movielens_genre_matrix, synthetic_crowd
from crowdtune.validation import check_choice

DATASETS = ("movielens", "synthetic")
USER_POOLS = ("random", "first")
MISSING = ("zero", "user-mean")
ADVERSARY_KINDS = ("away", "noise")
MOVIELENS_USERS = 610
# Keep one batch's pre-drawn random keys (runs x rounds x users floats) near 32 MB.
BATCH_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class CrowdSpec:
    """Where the users of a run come from.

    Parameters
    ----------
    dataset : {"movielens", "synthetic"}, default="movielens"
        ``synthetic`` draws users from a distribution fitted to MovieLens
        (:func:`crowdtune.datasets.synthetic_crowd`), for crowds beyond 610 users.
    n_users : int, default=100
        Users per run (N); one more is drawn and becomes the expert.
    user_pool : {"random", "first"}, default="random"
        ``random``: every run draws its N + 1 users at random from all 610 MovieLens users.
        ``first``: the first N + 1 users by id, as the published code did (only the expert changes
        between runs).
    missing : {"zero", "user-mean"}, default="zero"
        How unrated genres are filled (published: zero).
    drop_genres : tuple of str, default=()
        Genre columns to drop (for example ``("(no genres listed)", "IMAX")``).
    n_dims : int, default=20
        Dimensions of synthetic users.
    adversaries : float, default=0.0
        Share of the N users replaced by adversaries, in [0, 1); ``round(adversaries * N)``
        users (Python's rounding) are replaced, and at least one user must stay honest.
    adversary_kind : {"away", "noise"}, default="away"
        ``away``: the valid vector farthest from the expert, every dimension at the end of the
        crowd's value range opposite the expert's value (the top where the expert is below the
        middle of the range, the bottom otherwise): a coordinated attack that rates highest
        what the expert rates lowest and the reverse. ``noise``: a vector drawn uniformly from
        the crowd's value range in every dimension. The value range is ``[min, max]`` over the
        run's N users before replacement ([0, 5] for zero-filled MovieLens), so adversaries
        submit valid ratings and a range check cannot catch them.

        Why not reflect each user away from the expert (``2 u - e``)? It doubles the user's
        distance to the expert but does not make the user harmful: a user near the expert stays
        near it, and the coalitions' means barely notice. On MovieLens (N = 100, 10%
        adversaries, 100 runs) accurate Shapley values of the centroid game put every reflected
        adversary in the bottom 20% in 2% of runs (30% without clipping to valid ratings), so no
        credit scheme could be asked to. For the far corner they do so in every run. ``noise``
        adversaries are hardly harmful in this game (2% of runs): uniform vectors are dense and
        pull sparse (zero-filled) coalitions toward the expert about as often as away from it.
    """

    dataset: str = "movielens"
    n_users: int = 100
    user_pool: str = "random"
    missing: str = "zero"
    drop_genres: tuple[str, ...] = ()
    n_dims: int = 20
    adversaries: float = 0.0
    adversary_kind: str = "away"

    def __post_init__(self) -> None:
        check_choice(self.dataset, DATASETS, "dataset")
        check_choice(self.user_pool, USER_POOLS, "user pool")
        check_choice(self.missing, MISSING, "missing")
        check_choice(self.adversary_kind, ADVERSARY_KINDS, "adversary kind")
        if self.n_users < 1:
            raise ValueError(f"users must be at least 1, got {self.n_users}")
        if not 0.0 <= self.adversaries < 1.0:
            raise ValueError(f"adversaries must be a share in [0, 1), got {self.adversaries}")
        if self.n_adversaries >= self.n_users:
            raise ValueError(
                f"adversaries={self.adversaries} of {self.n_users} users rounds to "
                f"{self.n_adversaries} adversaries, leaving no honest user; lower the share"
            )
        if self.dataset == "movielens" and self.n_users + 1 > MOVIELENS_USERS:
            raise ValueError(
                f"MovieLens ml-latest-small has {MOVIELENS_USERS} users and each run needs "
                f"users + 1 (one becomes the expert), so users can be at most "
                f"{MOVIELENS_USERS - 1}; got {self.n_users}. Use --dataset synthetic for more."
            )

    @property
    def n_adversaries(self) -> int:
        """Users replaced by adversaries in every run: ``round(adversaries * n_users)``."""
        return round(self.adversaries * self.n_users)


def load_crowd_matrix(spec: CrowdSpec) -> np.ndarray | None:
    """The MovieLens user x genre matrix for ``spec``, or ``None`` for synthetic crowds."""
    if spec.dataset != "movielens":
        return None
    frame = movielens_genre_matrix(missing=spec.missing, drop_genres=spec.drop_genres)  # type: ignore[arg-type]
    return frame.to_numpy(dtype=float)


def run_streams(seed: int, run: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The setup and dynamics generators of run ``run`` under ``seed``."""
    setup, dynamics = np.random.SeedSequence(seed, spawn_key=(run,)).spawn(2)
    return np.random.default_rng(setup), np.random.default_rng(dynamics)


@dataclass
class RunSetups:
    """The starting state of a batch of runs.

    Attributes
    ----------
    users : ndarray of shape (n_runs, n_users, n_dims)
        The crowd, adversaries already in place.
    expert : ndarray of shape (n_runs, n_dims)
    start : ndarray of shape (n_runs, n_dims)
        Where the model starts.
    rngs : list of numpy.random.Generator
        The dynamics generator of every run.
    adversaries : ndarray of bool, shape (n_runs, n_users)
        Which users are adversaries.
    """

    users: np.ndarray
    expert: np.ndarray
    start: np.ndarray
    rngs: list[np.random.Generator]
    adversaries: np.ndarray


def place_adversaries(
    crowd: np.ndarray, expert: np.ndarray, spec: CrowdSpec, rng: np.random.Generator
) -> np.ndarray:
    """Replace ``spec.n_adversaries`` users of ``crowd`` (N, d) in place; return the mask (N,).

    The adversaries are the first ``n_adversaries`` positions of a permutation drawn from
    ``rng``; the ``noise`` kind then draws their vectors from ``rng`` too (see
    :class:`CrowdSpec` for the kinds). Nothing is drawn when the crowd has no adversaries, so
    such runs keep their numbers.
    """
    mask = np.zeros(len(crowd), dtype=bool)
    if spec.n_adversaries == 0:
        return mask
    chosen = rng.permutation(len(crowd))[: spec.n_adversaries]
    low, high = float(crowd.min()), float(crowd.max())
    if spec.adversary_kind == "away":
        crowd[chosen] = np.where(expert < (low + high) / 2, high, low)
    else:
        crowd[chosen] = rng.uniform(low, high, (len(chosen), crowd.shape[1]))
    mask[chosen] = True
    return mask


def build_setups(
    matrix: np.ndarray | None, spec: CrowdSpec, runs: Sequence[int], seed: int
) -> RunSetups:
    """Users, expert, model start, dynamics generators and adversary masks for ``runs``."""
    users, experts, starts, dynamics, masks = [], [], [], [], []
    for run in runs:
        setup_rng, dynamics_rng = run_streams(seed, run)
        if matrix is None:
            pool = synthetic_crowd(spec.n_users + 1, spec.n_dims, setup_rng)
        elif spec.user_pool == "first":
            pool = matrix[: spec.n_users + 1]
        else:
            pool = matrix[setup_rng.choice(len(matrix), spec.n_users + 1, replace=False)]
        expert = int(setup_rng.integers(spec.n_users + 1))
        crowd = np.delete(pool, expert, axis=0)
        starts.append(setup_rng.uniform(0.0, 5.0, pool.shape[1]))
        masks.append(place_adversaries(crowd, pool[expert], spec, setup_rng))
        experts.append(pool[expert])
        users.append(crowd)
        dynamics.append(dynamics_rng)
    return RunSetups(
        np.array(users), np.array(experts), np.array(starts), dynamics, np.array(masks)
    )


def make_setups(
    matrix: np.ndarray | None, spec: CrowdSpec, runs: Sequence[int], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.random.Generator]]:
    """Users (B, N, d), expert (B, d), model start (B, d) and dynamics generators for ``runs``.

    The adversary masks are left out; :func:`build_setups` returns them too.
    """
    setups = build_setups(matrix, spec, runs, seed)
    return setups.users, setups.expert, setups.start, setups.rngs


def batches(n_runs: int, n_rounds: int, n_users: int) -> Iterator[range]:
    """Consecutive run ranges whose pre-drawn randomness stays near ``BATCH_ELEMENTS`` floats."""
    size = max(1, BATCH_ELEMENTS // max(1, n_rounds * n_users))
    for begin in range(0, n_runs, size):
        yield range(begin, min(n_runs, begin + size))


@dataclass
class GroupingResult:
    """Tidy tables of a grouping experiment (one value per cell).

    Attributes
    ----------
    runs : DataFrame
        One row per run: settings columns, ``run``, ``start_distance``, ``final_distance``,
        ``rounds_to_threshold`` (nullable; NA when never reached), ``improving_rounds``,
        ``extra_evaluations`` (candidate scores the point scheme cost beyond the rounds' own).
    rounds : DataFrame
        One row per run and round (0 = start): settings columns, ``run``, ``round``, ``distance``.
    points : DataFrame
        Final points: settings columns, ``run``, ``user``, ``points``, ``adversary`` (bool).
    traces : dict of str to RunTrace
        The full trace of run 0 for each strategy (for drawing).
    settings : dict
        Everything needed to reproduce the experiment.
    """

    runs: pd.DataFrame
    rounds: pd.DataFrame
    points: pd.DataFrame
    traces: dict[str, RunTrace] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self, by: Sequence[str] = ("strategy",)) -> dict[str, Any]:
        """Per-group summaries (see :func:`summarize_runs`) keyed by the values of ``by``."""
        out: dict[str, Any] = {}
        for key, frame in self.runs.groupby(list(by), sort=False):
            name = ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)
            out[name] = summarize_runs(frame)
        return out


def run_cell(
    matrix: np.ndarray | None,
    spec: CrowdSpec,
    config: RoundConfig,
    n_runs: int,
    seed: int,
    *,
    threshold: float = 5.0,
    trace_runs: Sequence[int] = (),
    on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[int, RunTrace]]:
    """All runs of one setting, batched: per-run arrays and the requested traces.

    The arrays are ``distances`` (B, R + 1), ``points`` (B, N), ``improving_rounds`` (B,),
    ``extra_evaluations`` (B,), ``rounds_to_threshold`` (B,) and ``adversaries`` (B, N) bool.
    """
    config.check_users(spec.n_users)
    parts: list[RoundsResult] = []
    masks: list[np.ndarray] = []
    traces: dict[int, RunTrace] = {}
    for runs in batches(n_runs, config.n_rounds, spec.n_users):
        setups = build_setups(matrix, spec, runs, seed)
        keep = [r - runs.start for r in trace_runs if r in runs]
        result = run_rounds(
            setups.users, setups.expert, setups.start, setups.rngs, config, trace=keep
        )
        traces.update({runs.start + i: t for i, t in result.traces.items()})
        parts.append(result)
        masks.append(setups.adversaries)
        if on_batch is not None:
            on_batch(len(runs))
    distances = np.concatenate([p.distances for p in parts])
    return {
        "distances": distances,
        "points": np.concatenate([p.points for p in parts]),
        "improving_rounds": np.concatenate([p.improving_rounds for p in parts]),
        "extra_evaluations": np.concatenate([p.extra_evaluations for p in parts]),
        "rounds_to_threshold": first_round_within(distances, threshold),
        "adversaries": np.concatenate(masks),
    }, traces


def cell_tables(
    arrays: dict[str, np.ndarray], labels: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The runs, rounds and points tables of one setting, with ``labels`` as leading columns."""
    distances = arrays["distances"]
    n_runs, n_steps = distances.shape
    n_users = arrays["points"].shape[1]
    first = arrays["rounds_to_threshold"]
    reached = pd.array(np.where(first >= 0, first, 0), dtype="Int64")
    reached[first < 0] = pd.NA
    runs = pd.DataFrame(
        {
            **labels,
            "run": np.arange(n_runs),
            "start_distance": distances[:, 0],
            "final_distance": distances[:, -1],
            "rounds_to_threshold": reached,
            "improving_rounds": arrays["improving_rounds"],
            "extra_evaluations": arrays["extra_evaluations"],
        }
    )
    rounds = pd.DataFrame(
        {
            **labels,
            "run": np.repeat(np.arange(n_runs), n_steps),
            "round": np.tile(np.arange(n_steps), n_runs),
            "distance": distances.ravel(),
        }
    )
    points = pd.DataFrame(
        {
            **labels,
            "run": np.repeat(np.arange(n_runs), n_users),
            "user": np.tile(np.arange(n_users), n_runs),
            "points": arrays["points"].ravel(),
            "adversary": arrays["adversaries"].ravel(),
        }
    )
    return runs, rounds, points


def simulate_grouping(
    spec: CrowdSpec,
    config: RoundConfig,
    *,
    strategies: Sequence[str] | None = None,
    n_runs: int = 50,
    seed: int = 1,
    threshold: float = 5.0,
    on_batch: Callable[[int], None] | None = None,
) -> GroupingResult:
    """Run ``n_runs`` seeded runs for each strategy (default: ``config.strategy``).

    Returns tidy tables; run 0 of each strategy is traced for drawing. ``on_batch(k)`` is called
    after every batch of ``k`` runs (for progress bars).
    """
    if n_runs < 1:
        raise ValueError(f"runs must be at least 1, got {n_runs}")
    configs = [dataclasses.replace(config, strategy=s) for s in (strategies or [config.strategy])]
    for c in configs:
        c.check_users(spec.n_users)
    matrix = load_crowd_matrix(spec)
    tables: list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]] = []
    traces: dict[str, RunTrace] = {}
    for c in configs:
        arrays, cell_traces = run_cell(
            matrix, spec, c, n_runs, seed, threshold=threshold, trace_runs=(0,), on_batch=on_batch
        )
        labels = {"strategy": c.strategy, "metric": c.metric, "scheme": c.scheme}
        tables.append(cell_tables(arrays, labels))
        traces[c.strategy] = cell_traces[0]
    runs, rounds, points = (pd.concat(t, ignore_index=True) for t in zip(*tables, strict=True))
    settings = {
        **dataclasses.asdict(spec),
        **dataclasses.asdict(config),
        "strategies": [c.strategy for c in configs],
        "runs": n_runs,
        "seed": seed,
        "threshold": threshold,
    }
    settings.pop("strategy")
    return GroupingResult(runs, rounds, points, traces, settings)
