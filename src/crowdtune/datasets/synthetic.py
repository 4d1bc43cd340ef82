"""A synthetic crowd shaped like the MovieLens genre matrix, for runs beyond its 610 users.

Model
-----
Each synthetic user is a vector over ``d`` genres drawn in two independent steps:

1. preferences ``z ~ N(mean, cov)``, clipped to the rating scale [0.5, 5]. ``mean`` and ``cov``
   are the mean and covariance of the MovieLens matrix with unrated genres filled by the user's
   mean rating (``movielens_genre_matrix(missing="user-mean")``), so the correlations between
   genres (people who like Action tend to like Adventure) are kept;
2. each genre ``j`` is zeroed independently with probability ``1 - rated_prob[j]``, where
   ``rated_prob[j]`` is the share of MovieLens users who rated genre ``j`` at all. This
   reproduces the published zero-fill for unrated genres.

What it does not capture: how many movies a user rates, and every correlation of the missingness
(in MovieLens, users who rate little leave many genres unrated together, and people skip genres
they dislike, so "unrated" and "low preference" go together); the non-Gaussian shape of the
per-genre means (skew, the half-star grid for users with few ratings); and the clipping moves the
mean and shrinks the variance slightly at the ends of the scale.

The fitted parameters for the 20 published genres ship as ``movielens_crowd.json`` (regenerate
with ``python -m crowdtune.datasets``), so :func:`synthetic_crowd` works without the
data home.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from crowdtune.datasets.movielens import movielens_genre_matrix

RATING_SCALE = (0.5, 5.0)
_SHIPPED = "movielens_crowd.json"


@dataclass(frozen=True, eq=False)
class CrowdDistribution:
    """Parameters of the synthetic crowd model (see the module docstring).

    Arrays are stored read-only as float64, so an instance is truly immutable.

    Parameters
    ----------
    genres
        Names of the ``d`` dimensions.
    rated_prob
        (d,) probability that a user rated each genre (kept nonzero).
    mean
        (d,) mean of the user-mean-filled preferences.
    cov
        (d, d) covariance of the user-mean-filled preferences.
    """

    genres: tuple[str, ...]
    rated_prob: np.ndarray
    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        d = len(self.genres)
        object.__setattr__(self, "genres", tuple(self.genres))
        for name, shape in (("rated_prob", (d,)), ("mean", (d,)), ("cov", (d, d))):
            array = np.array(getattr(self, name), dtype=np.float64)  # a private copy
            if array.shape != shape or not np.isfinite(array).all():
                raise ValueError(f"{name} must be finite with shape {shape}, got {array.shape}")
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        if d == 0 or len(set(self.genres)) != d:
            raise ValueError("genres must be a non-empty tuple of distinct names")
        if ((self.rated_prob < 0) | (self.rated_prob > 1)).any():
            raise ValueError("rated_prob must lie in [0, 1]")
        if not np.allclose(self.cov, self.cov.T):
            raise ValueError("cov must be symmetric")

    def most_rated(self, n_dims: int) -> CrowdDistribution:
        """Return the distribution of the ``n_dims`` genres with the highest ``rated_prob``.

        The chosen genres keep their order in ``genres`` (ties in ``rated_prob`` go to the
        earlier genre), with their marginals and sub-covariance.
        """
        if not 1 <= n_dims <= len(self.genres):
            raise ValueError(f"n_dims must be between 1 and {len(self.genres)}, got {n_dims}")
        keep = np.sort(np.argsort(-self.rated_prob, kind="stable")[:n_dims])
        return CrowdDistribution(
            genres=tuple(self.genres[i] for i in keep),
            rated_prob=self.rated_prob[keep],
            mean=self.mean[keep],
            cov=self.cov[np.ix_(keep, keep)],
        )

    def to_json(self) -> str:
        """Return the parameters as JSON text (one covariance row per line, exact floats)."""
        head = {"genres": list(self.genres), "rated_prob": self.rated_prob.tolist(),
                "mean": self.mean.tolist()}  # fmt: skip
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
        rows = ",\n    ".join(json.dumps(row) for row in self.cov.tolist())
        return "{\n" + "\n".join(lines) + f'\n  "cov": [\n    {rows}\n  ]\n}}\n'

    @classmethod
    def from_json(cls, text: str) -> CrowdDistribution:
        """Build a distribution from :meth:`to_json` text.

        Raises
        ------
        ValueError
            If a field is missing or has the wrong shape.
        """
        data = json.loads(text)
        fields = ("genres", "rated_prob", "mean", "cov")
        if absent := [f for f in fields if not isinstance(data, dict) or f not in data]:
            raise ValueError(f"crowd distribution JSON lacks the field(s) {', '.join(absent)}")
        return cls(tuple(data["genres"]), *(np.asarray(data[f], float) for f in fields[1:]))


def fit_crowd_distribution(
    matrix: pd.DataFrame, filled: pd.DataFrame | None = None
) -> CrowdDistribution:
    """Fit the synthetic crowd model to a zero-filled user × genre matrix.

    Parameters
    ----------
    matrix
        Zero-filled matrix (``movielens_genre_matrix()``): 0 = unrated, else in [0.5, 5].
    filled
        The same matrix with unrated genres filled by each user's mean rating
        (``movielens_genre_matrix(missing="user-mean")``). When None, each user's mean over
        their rated genres stands in for their mean rating.

    Returns
    -------
    CrowdDistribution
        ``rated_prob`` = share of users with a nonzero genre; ``mean``/``cov`` = mean and
        covariance (ddof 1) of ``filled``.

    Raises
    ------
    ValueError
        Fewer than 2 users, values outside {0} ∪ [0.5, 5], a user with no rated genre, or a
        ``filled`` that does not match ``matrix``.
    """
    values = matrix.to_numpy(dtype=np.float64)
    rated = values != 0
    low, high = RATING_SCALE
    if values.ndim != 2 or len(values) < 2:
        raise ValueError("matrix needs at least 2 users (rows)")
    if not (~rated | ((values >= low) & (values <= high))).all():
        raise ValueError(f"matrix values must be 0 (unrated) or in [{low}, {high}]")
    if filled is None:
        if not rated.any(axis=1).all():
            raise ValueError("every user (row) needs at least one rated genre")
        user_mean = values.sum(axis=1) / rated.sum(axis=1)
        full = np.where(rated, values, user_mean[:, None])
    else:
        full = filled.to_numpy(dtype=np.float64)
        same_frame = filled.index.equals(matrix.index) and filled.columns.equals(matrix.columns)
        if not same_frame or not np.allclose(full[rated], values[rated]):
            raise ValueError("filled must have matrix's users and genres and agree where rated")
    return CrowdDistribution(
        genres=tuple(str(g) for g in matrix.columns),
        rated_prob=rated.mean(axis=0),
        mean=full.mean(axis=0),
        cov=np.cov(full, rowvar=False),
    )


@lru_cache(maxsize=1)
def movielens_crowd_distribution() -> CrowdDistribution:
    """Return the shipped distribution fitted to the 20 published MovieLens genres."""
    text = resources.files("crowdtune.datasets").joinpath(_SHIPPED).read_text(encoding="utf-8")
    return CrowdDistribution.from_json(text)


def synthetic_crowd(
    n_users: int,
    n_dims: int = 20,
    rng: np.random.Generator | int | None = None,
    distribution: CrowdDistribution | None = None,
) -> np.ndarray:
    """Draw a synthetic crowd of user preference vectors (model in the module docstring).

    Parameters
    ----------
    n_users
        Number of users (rows), at least 1.
    n_dims
        Number of genres; fewer than the distribution has keeps the most-rated ones, in their
        original order (``distribution.most_rated(n_dims).genres`` names them).
    rng
        Generator or seed; the same seed gives the same array.
    distribution
        Model parameters; :func:`movielens_crowd_distribution` when None.

    Returns
    -------
    numpy.ndarray
        (n_users, n_dims) float64, each value 0 (unrated) or in [0.5, 5].

    Raises
    ------
    ValueError
        ``n_users < 1``, or ``n_dims`` outside 1 .. the number of genres in the distribution.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    model = (distribution or movielens_crowd_distribution()).most_rated(n_dims)
    generator = np.random.default_rng(rng)
    # eigh tolerates a covariance that is only positive semi-definite.
    preferences = generator.multivariate_normal(model.mean, model.cov, size=n_users, method="eigh")
    np.clip(preferences, *RATING_SCALE, out=preferences)
    rated = generator.random((n_users, n_dims)) < model.rated_prob
    return np.where(rated, preferences, 0.0)


def write_movielens_crowd_json(path: Path | None = None, home: Path | None = None) -> Path:
    """Fit the model to the MovieLens matrix in the data home and write it as JSON.

    Parameters
    ----------
    path
        Output file; the shipped ``movielens_crowd.json`` beside this module when None.
    home
        Data home; :func:`~crowdtune.datasets.data_home` when None.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    distribution = fit_crowd_distribution(
        movielens_genre_matrix(home=home), movielens_genre_matrix(missing="user-mean", home=home)
    )
    target = path or Path(__file__).with_name(_SHIPPED)
    target.write_text(distribution.to_json(), encoding="utf-8")
    return target
