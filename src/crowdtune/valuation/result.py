"""The one result type of every Shapley estimator: values with uncertainty and provenance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(kw_only=True)
class ValuationResult:
    """Estimated Shapley values of one game.

    Parameters
    ----------
    values : ndarray of shape (n,)
        The estimate for each player.
    stderr : ndarray of shape (n,)
        Standard error of each estimate: 0 for exact methods, ``inf`` where one sample gave no
        spread to measure.
    n_evaluations : int
        How many coalition values the estimate cost (the empty and full coalitions included).
    seconds : float
        Wall-clock time of the estimate.
    method : str
        What produced it, with its settings, e.g. ``"permutation(pairs=50, path=centroid)"``.
    n_samples : int, default 0
        Independent samples behind the standard errors (antithetic pairs); 0 for exact methods.
    """

    values: np.ndarray
    stderr: np.ndarray
    n_evaluations: int
    seconds: float
    method: str
    n_samples: int = 0

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        self.stderr = np.asarray(self.stderr, dtype=float)
        if self.values.shape != self.stderr.shape or self.values.ndim != 1:
            raise ValueError(
                f"values and stderr must be 1-d of the same length; got shapes "
                f"{self.values.shape} and {self.stderr.shape}"
            )

    @property
    def n_players(self) -> int:
        """Number of players valued."""
        return len(self.values)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per player with columns ``player``, ``value``, ``stderr``."""
        return pd.DataFrame(
            {"player": np.arange(self.n_players), "value": self.values, "stderr": self.stderr}
        )
