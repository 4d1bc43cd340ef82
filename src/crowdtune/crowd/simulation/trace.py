"""What a single simulated run leaves behind for drawing: users, expert, model path and groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunTrace:
    """Everything needed to redraw one run of Crowd-SFT rounds in the point-in-space simulation.

    Attributes
    ----------
    strategy, metric : str
        The grouping strategy and evaluation metric of the run.
    users : ndarray of shape (n_users, n_dims)
        The contributors' points.
    expert : ndarray of shape (n_dims,)
        The expert target the model should approach.
    model_path : ndarray of shape (n_rounds + 1, n_dims)
        The model after each round; row 0 is the start.
    groups : ndarray of int, shape (n_rounds, n_users)
        The group of every user in every round.
    chosen : ndarray of int, shape (n_rounds,)
        The group whose candidate became the new model, or -1 when the model did not move.
    points : ndarray of shape (n_rounds + 1, n_users)
        Every user's points after each round; row 0 is the start.
    """

    strategy: str
    metric: str
    users: np.ndarray
    expert: np.ndarray
    model_path: np.ndarray
    groups: np.ndarray
    chosen: np.ndarray
    points: np.ndarray

    @property
    def n_rounds(self) -> int:
        return int(self.groups.shape[0])
