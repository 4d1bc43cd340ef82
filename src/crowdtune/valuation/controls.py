"""Control variates for permutation sampling: games whose Shapley values have a closed form.

A control game ``c`` close to the game ``v`` reduces Monte Carlo noise: the sampler estimates the
Shapley values of ``v - c`` (small marginals, small variance) on the same permutations and adds
the exact values of ``c``. Any ``c`` keeps the estimate unbiased; a good one makes it precise.

:class:`SizeLinearGame` is the family used here, ``c(S) = g(|S|) + h(|S|) * sum(x[S])``, whose
Shapley values are linear in ``x``. :func:`centroid_control` builds its member closest to a
:class:`~crowdtune.valuation.games.CentroidGame`: the first-order Taylor expansion of the metric
around the mean of all users, so ``c(S) = f(p) + grad f(p) . (mean(S) - p)``.

>>> import numpy as np
>>> from crowdtune.valuation.estimators import exact_shapley
>>> game = SizeLinearGame(np.array([1.0, 2.0, 4.0]), g=np.array([0.0, 1, 1, 1]),
...                       h=np.array([0.0, 1, 1 / 2, 1 / 3]))
>>> bool(np.allclose(game.shapley_values(), exact_shapley(game).values))
True
"""

from __future__ import annotations

import numpy as np

from crowdtune.valuation.games import CentroidGame, check_coalitions

#: Relative step of the central differences that take the metric's gradient.
GRADIENT_STEP = 1e-6


class SizeLinearGame:
    """``c(S) = g[|S|] + h[|S|] * sum(x[S])`` for arrays ``g``, ``h`` indexed by coalition size.

    Parameters
    ----------
    x : ndarray of shape (n,)
        One number per player.
    g, h : ndarray of shape (n + 1,)
        Functions of the coalition size; ``g[0]`` is ``c(∅)``.
    """

    def __init__(self, x: np.ndarray, g: np.ndarray, h: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=float)
        self.n_players = len(self.x)
        self.g = np.asarray(g, dtype=float)
        self.h = np.asarray(h, dtype=float)
        if self.g.shape != (self.n_players + 1,) or self.h.shape != (self.n_players + 1,):
            raise ValueError(
                f"g and h must have shape ({self.n_players + 1},) for {self.n_players} players; "
                f"got {self.g.shape} and {self.h.shape}"
            )

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` (bool ``(k, n)``) as floats ``(k,)``."""
        coalitions = check_coalitions(coalitions, self.n_players)
        sizes = coalitions.sum(axis=1)
        return self.g[sizes] + self.h[sizes] * (coalitions.astype(float) @ self.x)

    def prefix_values(self, permutations: np.ndarray) -> np.ndarray:
        """Values of the ``n + 1`` prefixes of each permutation, ``(m, n)`` → ``(m, n + 1)``."""
        m = len(permutations)
        sums = np.zeros((m, self.n_players + 1))
        np.cumsum(self.x[permutations], axis=1, out=sums[:, 1:])
        return self.g + self.h * sums

    def position_means(self, position: int) -> np.ndarray:
        """Each player's expected marginal contribution when it joins ``position`` others.

        The others are a uniformly random ``position``-subset of the rest, whose ``x`` sums to
        ``position * (X - x_i) / (n - 1)`` on average, which makes the expectation closed-form.
        """
        n, k = self.n_players, position
        others = (self.x.sum() - self.x) / max(n - 1, 1)
        return (
            self.g[k + 1]
            - self.g[k]
            + self.h[k + 1] * (self.x + k * others)
            - self.h[k] * k * others
        )

    def shapley_values(self) -> np.ndarray:
        """Exact Shapley values: the mean over positions of :meth:`position_means`, in ``O(n)``.

        Averaging the position formula over ``k = 0 .. n-1`` gives
        ``(g[n] - g[0]) / n + mean(h[1:]) x_i + mean((h[k+1] - h[k]) k) (X - x_i) / (n - 1)``.
        """
        n = self.n_players
        k = np.arange(n)
        others = (self.x.sum() - self.x) / max(n - 1, 1)
        step = np.mean((self.h[1:] - self.h[:-1]) * k)
        return (self.g[n] - self.g[0]) / n + self.h[1:].mean() * self.x + step * others


def centroid_control(game: CentroidGame) -> SizeLinearGame | None:
    """The first-order expansion of ``game``'s metric around the mean ``p`` of all users.

    ``c(S) = f(p) + grad f(p) . (mean(S) - p)`` for non-empty ``S`` and ``c(∅) = v(∅)``, that is
    ``x_i = grad f(p) . (u_i - p)``, ``g = f(p)``, ``h = 1 / |S|``. The gradient comes from central
    differences, so every metric works; ``None`` when it is not finite (a cosine at the origin).
    """
    users, expert = game.users, game.expert
    n, d = users.shape
    centre = users.mean(axis=0)
    step = GRADIENT_STEP * max(1.0, float(np.abs(centre).max()))
    shifts = np.eye(d) * step
    with np.errstate(all="ignore"):  # a non-finite gradient means no control, not a warning
        scores = game._score(np.concatenate([centre + shifts, centre - shifts]), expert)
        gradient = (scores[:d] - scores[d:]) / (2 * step)
    if not np.all(np.isfinite(gradient)):
        return None
    sizes = np.arange(n + 1, dtype=float)
    g = np.full(n + 1, float(game._score(centre, expert)))
    g[0] = game.empty_value
    h = np.divide(1.0, sizes, out=np.zeros(n + 1), where=sizes > 0)
    return SizeLinearGame((users - centre) @ gradient, g, h)


def centroid_pair_means(game: CentroidGame, *, block_elements: int = 2**22) -> np.ndarray:
    """Each player's mean pair value, ``mean over j != i of v({i, j})``, shape ``(n,)``.

    ``O(n^2 d)`` in row blocks of about ``block_elements`` floats, never the whole ``(n, n)``
    matrix. For ``l2`` and ``cosine`` the pair means come from a Gram matrix (one BLAS product per
    block): with ``a = u - e``, ``||(u_i + u_j) / 2 - e||^2 = (|a_i|^2 + |a_j|^2 + 2 a_i.a_j) / 4``.
    """
    users, expert = game.users, game.expert
    n, d = users.shape
    rows = max(1, block_elements // max(1, n * (d if game.metric not in ("l2", "cosine") else 1)))
    base = users - expert if game.metric == "l2" else users
    squares = np.einsum("ij,ij->i", base, base)
    out = np.empty(n)
    for first in range(0, n, rows):
        block = slice(first, min(n, first + rows))
        if game.metric == "l2":
            gram = base[block] @ base.T
            pair = -np.sqrt(np.maximum(squares[block, None] + squares[None, :] + 2 * gram, 0)) / 2
        elif game.metric == "cosine":
            gram = base[block] @ base.T
            norms = np.sqrt(np.maximum(squares[block, None] + squares[None, :] + 2 * gram, 0))
            dots = (base[block] @ expert)[:, None] + (base @ expert)[None, :]
            scale = norms * np.linalg.norm(expert)
            pair = np.divide(dots, scale, out=np.zeros_like(dots), where=scale > 0)
        else:
            pair = game._score((users[block, None, :] + users[None, :, :]) / 2, expert)
        out[block] = pair.sum(axis=1) - np.diagonal(pair[:, block])
    return out / max(n - 1, 1)
