"""Annotator reliability: Dawid–Skene over A/B/tie votes, with majority vote alongside.

Majority vote treats every annotator alike. Dawid and Skene (1979) instead give each annotator a
confusion matrix ``P(vote k | true label c)`` and each item a latent true label, and fit both by
EM; an item's posterior over {first better, second better, tie} is its soft label, and an
annotator's accuracy ``sum_c prior_c * P(vote c | true c)`` is their reliability.

Items are matched as in :mod:`crowdtune.preference.agreement` (prompt plus the unordered response
pair, labels in canonical order), so a vote shown B/A counts on the same item as one shown A/B. The
canonical order (text order) carries no information about quality, so by default the fit is
*symmetric*: every confusion matrix and the priors are averaged with their first/second swap,
which halves the free parameters (useful for judges with few votes) and makes the result
independent of which response sorts first.

Why our own EM and not crowd-kit's ``DawidSkene`` (1.4.2, which does take the three labels as
plain classes and exposes ``probas_``, ``priors_`` and ``errors_``): it requires ``transformers``
and ``nltk`` at install time (our ``transformers`` is an optional extra), it has no smoothing (an
unseen cell is 1e-10, so a judge with 20 votes gets near-certain zeros), no A/B symmetry and no
seed, and its pandas EM is too slow to refit a few hundred times for bootstrap intervals. The EM
here starts from majority vote (vote shares), adds Laplace smoothing to every count and works in
log space; on the same votes without symmetry its posteriors match crowd-kit's (see the tests).

Intervals are percentile bootstrap intervals over items (whole items resampled, EM refitted).

>>> frame, _ = simulate_votes([confusion(0.9)] * 3 + [confusion(0.0)], n_items=60, seed=0)
>>> result = dawid_skene(frame, n_bootstrap=0)
>>> result.annotators.sort_values("accuracy").annotator.iloc[0]
'annotator3'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from crowdtune.preference.agreement import CATEGORIES, canonical_votes, majority_of_others
from crowdtune.tables import json_records

__all__ = [
    "LABELS",
    "DawidSkeneResult",
    "confusion",
    "dawid_skene",
    "item_labels",
    "reliability_weights",
    "simulate_votes",
    "soft_labels",
]

K = len(CATEGORIES)
#: How :func:`item_labels` collapses each item's votes to one label.
LABELS = ("majority", "dawid-skene")
#: Exchanges the first and second response (the tie stays).
_SWAP = np.array([1, 0, 2])


@dataclass(frozen=True)
class _Fit:
    posteriors: np.ndarray  # (items, K)
    priors: np.ndarray  # (K,)
    confusion: np.ndarray  # (annotators, K true, K vote)
    log_likelihood: float
    n_iter: int
    converged: bool

    @property
    def accuracy(self) -> np.ndarray:
        return np.einsum("c,jcc->j", self.priors, self.confusion)


def _em(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    shape: tuple[int, int],
    *,
    max_iter: int,
    tol: float,
    smoothing: float,
    symmetric: bool,
) -> _Fit:
    """Dawid–Skene EM on the votes ``(item, annotator, label)`` of ``shape`` = (items,
    annotators), started from majority vote (each item's vote shares).

    Smoothing adds ``smoothing`` pseudo-votes to every row of every confusion matrix, spread like
    the pooled matrix of all annotators (and ``smoothing`` to every prior count): a judge with a
    handful of votes is pulled towards the average judge rather than towards a random voter,
    which with uniform add-one cells made true ties vanish on MT-Bench's many one-vote judges.
    """
    n_items, n_annotators = shape
    cell = annotator * K + label  # (annotator, vote) pair of each vote

    def per_item(weights: np.ndarray) -> np.ndarray:  # (votes, K) summed into (items, K)
        return np.stack([np.bincount(item, weights[:, c], n_items) for c in range(K)], axis=1)

    posteriors = per_item(np.eye(K)[label]) + 1e-9
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    previous = -np.inf
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        # M-step: priors and confusion matrices from the soft labels.
        priors = posteriors.sum(axis=0) + smoothing
        weights = posteriors[item]  # (votes, K true)
        counts: np.ndarray = (
            np.stack([np.bincount(cell, weights[:, c], n_annotators * K) for c in range(K)])
            .reshape(K, n_annotators, K)
            .transpose(1, 0, 2)
        )  # (annotators, true, vote)
        if symmetric:
            priors = (priors + priors[_SWAP]) / 2
            counts = (counts + counts[:, _SWAP][:, :, _SWAP]) / 2
        pooled = counts.sum(axis=0) + 1e-9
        cells = counts + smoothing * pooled / pooled.sum(axis=1, keepdims=True)
        priors = priors / priors.sum()
        matrices = cells / np.maximum(cells.sum(axis=2, keepdims=True), 1e-300)
        # E-step in log space: log p_c + sum over the item's votes of log P(vote | c).
        with np.errstate(divide="ignore"):
            log_matrices = np.log(matrices)
        joint = np.log(priors) + per_item(log_matrices[annotator, :, label])
        norm = logsumexp(joint, axis=1, keepdims=True)
        posteriors = np.exp(joint - norm)
        log_likelihood = float(norm.sum())
        if abs(log_likelihood - previous) <= tol * max(len(item), 1):
            converged = True
            break
        previous = log_likelihood
    return _Fit(posteriors, priors, matrices, log_likelihood, n_iter, converged)


@dataclass(frozen=True)
class DawidSkeneResult:
    """Dawid–Skene fitted to a comparisons frame (see :func:`dawid_skene`).

    Classes are ordered first better, second better, tie, where *first* is the item's first
    response in canonical (text) order; ``items`` restates the posteriors in the A/B order of the
    item's first row.

    Parameters
    ----------
    annotators : pandas.DataFrame
        ``annotator, n_votes, accuracy, ci_low, ci_high, majority_agreement, majority_items``:
        the Dawid–Skene accuracy (prior-weighted diagonal) with its bootstrap interval, and the
        majority baseline, agreement with the majority of the other votes (on ``majority_items``
        items where they are not tied). Least reliable first.
    confusion : numpy.ndarray
        (annotators, 3, 3): ``confusion[j, c, k] = P(annotator j votes k | true label c)``, in
        the row order of ``annotators``.
    confusion_ci : numpy.ndarray
        (annotators, 3, 3, 2): low and high ends of each cell's bootstrap interval.
    priors, priors_ci : numpy.ndarray
        (3,) class shares and (3, 2) their interval.
    items : pandas.DataFrame
        One row per item: ``id`` (its first row's id, or index when the frame has no ``id``),
        ``n_votes``, ``p_a, p_b, p_tie`` (posterior, in that row's A/B order), ``label`` (the
        most probable) and the baseline's ``majority`` (-1 where the votes are tied) with
        ``majority_a, majority_b, majority_tie`` (vote shares).
    log_likelihood, n_iter, converged
        Of the EM on all items.
    """

    annotators: pd.DataFrame
    confusion: np.ndarray
    confusion_ci: np.ndarray
    priors: np.ndarray
    priors_ci: np.ndarray
    items: pd.DataFrame
    log_likelihood: float
    n_iter: int
    converged: bool
    confidence: float
    _item_of_row: np.ndarray
    _swapped: np.ndarray

    @property
    def agreement_with_majority(self) -> float:
        """Share of items with a majority where Dawid–Skene's label equals it."""
        decided = self.items["majority"] >= 0
        return float((self.items.label[decided] == self.items.majority[decided]).mean())

    def row_posteriors(self) -> np.ndarray:
        """(rows, 3) posterior of every row of the fitted frame, in that row's A/B order: the
        soft label to train on."""
        canonical = self._canonical_posteriors()[self._item_of_row]
        return np.where(self._swapped[:, None], canonical[:, _SWAP], canonical)

    def _canonical_posteriors(self) -> np.ndarray:
        p = self.items[["p_a", "p_b", "p_tie"]].to_numpy()
        return np.where(self.items["_swapped"].to_numpy()[:, None], p[:, _SWAP], p)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary: annotators with their confusion matrices, priors, items."""
        annotators = json_records(self.annotators)
        for row, matrix, ci in zip(annotators, self.confusion, self.confusion_ci, strict=True):
            row["confusion"] = matrix.tolist()
            row["confusion_ci_low"] = ci[..., 0].tolist()
            row["confusion_ci_high"] = ci[..., 1].tolist()
        return {
            "model": "dawid-skene",
            "classes": ["a", "b", "tie"],
            "n_items": len(self.items),
            "n_annotators": len(self.annotators),
            "n_votes": int(self.annotators.n_votes.sum()),
            "priors": self.priors.tolist(),
            "priors_ci": self.priors_ci.tolist(),
            "agreement_with_majority": self.agreement_with_majority,
            "log_likelihood": self.log_likelihood,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "confidence": self.confidence,
            "annotators": annotators,
            "items": json_records(self.items.drop(columns="_swapped")),
        }


def dawid_skene(
    frame: pd.DataFrame,
    *,
    max_iter: int = 200,
    tol: float = 1e-7,
    smoothing: float = 1.0,
    symmetric: bool = True,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> DawidSkeneResult:
    """Fit Dawid–Skene to the votes of a comparisons frame (see the module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        ``prompt, response_a, response_b, label, annotator`` (a
        :func:`crowdtune.records.comparisons_frame`); ``id`` names the items when present.
        An annotator's repeated votes on the same content are matched with the others' repeats,
        in order, as items of their own (as in
        :func:`~crowdtune.preference.agreement.agreement`).
    max_iter, tol : int, float
        EM stops after ``max_iter`` rounds or when the log likelihood per vote moves by at most
        ``tol``.
    smoothing : float, default 1.0
        Pseudo-votes added to every row of every confusion matrix, spread like the pooled
        matrix of all annotators, and to every prior count (Laplace-style smoothing).
    symmetric : bool, default True
        Tie the parameters under the first/second swap (see the module docstring).
    n_bootstrap : int, default 200
        Resamples of the items for the intervals (0: no intervals, NaN).
    confidence : float, default 0.95
        Coverage of the intervals.
    seed : int, optional
        Seed of the resampling (the EM itself is deterministic).

    Raises
    ------
    ValueError
        For a malformed frame (see :func:`~crowdtune.preference.agreement.canonical_votes`), no
        votes, bad options.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if max_iter < 1 or tol < 0 or smoothing < 0 or n_bootstrap < 0:
        raise ValueError("max_iter must be >= 1, and tol, smoothing and n_bootstrap >= 0")
    if frame.empty:
        raise ValueError("comparisons frame has no votes; Dawid–Skene needs some")
    votes = canonical_votes(frame)
    # As in agreement(): an annotator's k-th vote on identical content joins the others' k-th
    # votes as an item of its own (PandaLM repeats texts across rows; each row is an item).
    occurrence = votes.groupby(["item", "annotator"]).cumcount()
    votes["item"] = (
        votes.assign(occurrence=occurrence).groupby(["item", "occurrence"], sort=False).ngroup()
    )
    item, n_items = votes["item"].to_numpy(), int(votes["item"].max()) + 1
    codes, names = pd.factorize(votes["annotator"], sort=True)
    label = votes["label"].to_numpy()
    shape = (n_items, len(names))
    options = {"max_iter": max_iter, "tol": tol, "smoothing": smoothing, "symmetric": symmetric}
    fit = _em(item, codes, label, shape, **options)  # type: ignore[arg-type]
    n_votes = np.bincount(codes, minlength=len(names))
    # Votes sorted by item, so that a resampled item's votes are one slice.
    by_item = np.argsort(item, kind="stable")
    starts = np.searchsorted(item[by_item], np.arange(n_items + 1))

    rng = np.random.default_rng(seed)
    boot_confusion = np.full((n_bootstrap, len(names), K, K), np.nan)
    boot_accuracy = np.full((n_bootstrap, len(names)), np.nan)
    boot_priors = np.full((n_bootstrap, K), np.nan)
    for b in range(n_bootstrap):
        chosen = rng.integers(0, n_items, n_items)
        sizes = starts[chosen + 1] - starts[chosen]
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = by_item[np.repeat(starts[chosen], sizes) + offsets]
        new_item = np.repeat(np.arange(n_items), sizes)
        refit = _em(new_item, codes[rows], label[rows], shape, **options)  # type: ignore[arg-type]
        seen = np.bincount(codes[rows], minlength=len(names)) > 0  # absent: no estimate
        boot_confusion[b, seen] = refit.confusion[seen]
        boot_accuracy[b, seen] = refit.accuracy[seen]
        boot_priors[b] = refit.priors
    tail = (1 - confidence) / 2

    def interval(draws: np.ndarray) -> np.ndarray:
        if n_bootstrap == 0:
            return np.full((*draws.shape[1:], 2), np.nan)
        return np.moveaxis(np.nanquantile(draws, [tail, 1 - tail], axis=0), 0, -1)

    per_item = np.zeros((n_items, K))
    np.add.at(per_item, (item, label), 1)
    majority = majority_of_others(item, codes, label, per_item, np.asarray(names), confidence)
    majority = majority.set_index("annotator").reindex(names)
    accuracy_ci = interval(boot_accuracy)
    annotators = pd.DataFrame({
        "annotator": names, "n_votes": n_votes,
        "accuracy": fit.accuracy, "ci_low": accuracy_ci[:, 0], "ci_high": accuracy_ci[:, 1],
        "majority_agreement": majority["agreement"].to_numpy(),
        "majority_items": majority["n_items"].to_numpy(),
    })  # fmt: skip
    order = np.argsort(fit.accuracy, kind="stable")

    first_row = votes.drop_duplicates("item").sort_values("item")  # index: row positions
    swapped = first_row["swapped"].to_numpy()
    shares = per_item / per_item.sum(axis=1, keepdims=True)
    top = per_item.max(axis=1, keepdims=True)
    majority_label = np.where((per_item == top).sum(axis=1) == 1, per_item.argmax(axis=1), -1)

    def shown(p: np.ndarray) -> np.ndarray:
        return np.where(swapped[:, None], p[:, _SWAP], p)

    posterior, shown_shares = shown(fit.posteriors), shown(shares)
    ids = frame["id"].to_numpy() if "id" in frame.columns else np.arange(len(frame))
    items = pd.DataFrame({
        "id": ids[first_row.index.to_numpy()],
        "n_votes": per_item.sum(axis=1).astype(np.int64),
        "p_a": posterior[:, 0], "p_b": posterior[:, 1], "p_tie": posterior[:, 2],
        "label": posterior.argmax(axis=1),
        "majority": np.where(swapped & (majority_label < 2) & (majority_label >= 0),
                             1 - majority_label, majority_label),
        "majority_a": shown_shares[:, 0], "majority_b": shown_shares[:, 1],
        "majority_tie": shown_shares[:, 2], "_swapped": swapped,
    })  # fmt: skip
    return DawidSkeneResult(
        annotators=annotators.iloc[order].reset_index(drop=True),
        confusion=fit.confusion[order],
        confusion_ci=interval(boot_confusion)[order],
        priors=fit.priors,
        priors_ci=interval(boot_priors),
        items=items,
        log_likelihood=fit.log_likelihood,
        n_iter=fit.n_iter,
        converged=fit.converged,
        confidence=confidence,
        _item_of_row=item,
        _swapped=votes["swapped"].to_numpy(),
    )


def _fit_items(frame: pd.DataFrame) -> tuple[DawidSkeneResult, pd.DataFrame]:
    """Dawid–Skene on ``frame`` without intervals, and the first row of each item (in item
    order). A row without an annotator counts as the one vote of an annotator of its own."""
    anonymous = frame["annotator"].isna().to_numpy()
    voters = frame.assign(
        annotator=np.where(anonymous, [f"\0anonymous {i}" for i in range(len(frame))],
                           frame["annotator"].to_numpy(dtype=object))
    )  # fmt: skip
    result = dawid_skene(voters, n_bootstrap=0)
    _, first = np.unique(result._item_of_row, return_index=True)  # items are 0..n-1
    return result, frame.iloc[first].reset_index(drop=True)


def item_labels(frame: pd.DataFrame, labels: str = "dawid-skene") -> pd.DataFrame:
    """One row per item of ``frame`` (its first row) labelled by all of the item's votes: their
    ``majority``, or the ``dawid-skene`` label (the most probable class of the item's
    posterior). These are hard labels; :func:`soft_labels` gives the posteriors themselves as
    training rows with sample weights.

    Items are matched as in :func:`dawid_skene`. A row without an annotator counts as the one
    vote of an annotator of its own. With ``majority`` an item whose votes tie for the top
    (one A and one B, say) has no label and is left out.

    Raises
    ------
    ValueError
        For an unknown ``labels``, or what :func:`dawid_skene` raises.
    """
    if labels not in LABELS:
        raise ValueError(f"unknown labels {labels!r}; choose one of {', '.join(LABELS)}")
    result, out = _fit_items(frame)
    label = result.items["label" if labels == "dawid-skene" else "majority"].to_numpy()
    out["label"] = label.astype(np.int64)
    return out[label >= 0].reset_index(drop=True)


def soft_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The Dawid–Skene posteriors of ``frame``'s items as training rows: each item's first row
    three times, with ``label`` 0, 1, 2 (A, B, tie in that row's order) and ``weight`` the
    item's posterior probability of that class (the three weights of an item add up to 1).

    Fitting a predictor on these rows with ``sample_weight=weight`` minimises the expected log
    loss under the posterior, i.e. cross-entropy against the soft label; a predictor's weighted
    fit equals its fit on repeated rows (``weight`` 0.5 = half a row). Rows are ordered item by
    item, classes in order. Items are matched, and rows without an annotator counted, as in
    :func:`item_labels`.

    Raises
    ------
    ValueError
        What :func:`dawid_skene` raises.
    """
    result, first = _fit_items(frame)
    posterior = result.items[["p_a", "p_b", "p_tie"]].to_numpy()
    out = first.loc[first.index.repeat(K)].reset_index(drop=True)
    out["label"] = np.tile(np.arange(K, dtype=np.int64), len(first))
    out["weight"] = posterior.ravel()
    return out


def reliability_weights(result: DawidSkeneResult) -> pd.Series:
    """Each annotator's vote weight from a Dawid–Skene fit: how far above chance their
    accuracy is, ``max(0, (accuracy - chance) / (1 - chance))``, indexed by annotator.

    ``accuracy`` is the fit's (``sum_c prior_c P(vote c | true c)``) and ``chance`` the
    accuracy of someone who votes with the annotator's own vote shares but independently of
    the truth (``sum_c prior_c * share_c``, with ``share = prior @ confusion``), so the weight
    is Cohen's kappa between the annotator and the latent true label, floored at 0. A perfect
    annotator weighs 1; a random voter, and one who always gives the same answer, about 0; a
    contrarian, who is right less often than chance, exactly 0: their votes say more about
    what the truth is not than what it is, and are not trusted.
    """
    priors = result.priors
    shares = np.einsum("c,jck->jk", priors, result.confusion)
    accuracy = np.einsum("c,jcc->j", priors, result.confusion)
    chance = shares @ priors
    kappa = (accuracy - chance) / np.maximum(1 - chance, 1e-12)
    return pd.Series(np.clip(kappa, 0.0, 1.0), index=result.annotators["annotator"].to_numpy())


def confusion(accuracy: float, tie_accuracy: float | None = None) -> np.ndarray:
    """A 3x3 confusion matrix ``P(vote k | true c)`` that is right with probability
    ``accuracy`` (``tie_accuracy`` on true ties, default the same) and otherwise picks one of
    the two wrong labels uniformly. ``confusion(1/3)`` is a random voter; ``confusion(0.0)`` a
    contrarian, never right."""
    tie = accuracy if tie_accuracy is None else tie_accuracy
    diagonal = np.array([accuracy, accuracy, tie])
    matrix = np.repeat(((1 - diagonal) / 2)[:, None], K, axis=1)
    matrix[np.arange(K), np.arange(K)] = diagonal
    return matrix


def simulate_votes(
    confusions: list[np.ndarray] | np.ndarray,
    *,
    n_items: int,
    priors: tuple[float, float, float] = (0.4, 0.4, 0.2),
    seed: int | None = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """A simulated campaign where the truth is known: every annotator (one confusion matrix each,
    named ``annotator<j>``) votes once on each of ``n_items`` items drawn from ``priors``, each
    vote shown in a random A/B order.

    Returns
    -------
    (pandas.DataFrame, numpy.ndarray)
        A comparisons frame (``id, prompt, response_a, response_b, label, annotator``; item
        ``i`` has ``id`` ``item<i>``) and the true label of each row in that row's A/B order.
    """
    rng = np.random.default_rng(seed)
    matrices = np.asarray(confusions, dtype=float)
    truth = rng.choice(K, size=n_items, p=np.asarray(priors) / np.sum(priors))
    cumulative = matrices[:, truth].cumsum(axis=2)  # (annotators, items, K)
    labels = (rng.random((*cumulative.shape[:2], 1)) > cumulative).sum(axis=2).T  # (items, ann)
    labels = np.minimum(labels, K - 1)
    flip = rng.random(labels.shape) < 0.5
    i, j = np.indices(labels.shape)
    stem = np.char.add("answer ", i.astype(str))
    one, two = np.char.add(stem, " one"), np.char.add(stem, " two")  # "one" sorts first
    frame = pd.DataFrame({
        "id": np.char.add("item", i.astype(str)).ravel(),
        "prompt": np.char.add("prompt ", i.astype(str)).ravel(),
        "response_a": np.where(flip, two, one).ravel(),
        "response_b": np.where(flip, one, two).ravel(),
        "label": np.where(flip & (labels < 2), 1 - labels, labels).ravel().astype(np.int64),
        "annotator": np.char.add("annotator", j.astype(str)).ravel(),
    })  # fmt: skip
    true_rows = np.broadcast_to(truth[:, None], labels.shape)
    true_rows = np.where(flip & (true_rows < 2), 1 - true_rows, true_rows).ravel()
    return frame.astype(object).astype({"label": np.int64}), true_rows
