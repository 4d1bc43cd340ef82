"""Inter-annotator agreement on pairwise comparisons that several annotators voted on.

An *item* is one prompt with one pair of responses, whatever side each annotator saw first: votes
are put in a canonical order (the two responses sorted by text, the label's A and B exchanged when
that reverses them) before they are grouped, because sources such as MT-Bench show the sides in a
random order per vote. Labels are nominal: A, B, tie (0, 1, 2 in canonical order).

:func:`agreement` reports

- Cohen's kappa for every pair of annotators who share at least ``min_shared`` items
  (:func:`sklearn.metrics.cohen_kappa_score`), with their raw agreement;
- Fleiss' kappa (:func:`statsmodels.stats.inter_rater.fleiss_kappa`). Fleiss' statistic assumes
  the same number of raters on every item, so it is computed on the items that have the most
  common number of raters (at least 2); the result says how many raters and items that is;
- Krippendorff's alpha, nominal (:func:`krippendorff.alpha`), which allows any number of raters
  per item: every item with at least two votes counts;
- each annotator's agreement with the majority of the *other* annotators of an item (items where
  the others' most common label is tied are left out), with a Wilson interval.

The intervals of Fleiss' kappa and Krippendorff's alpha are percentile bootstrap intervals over
items (whole items resampled with replacement, as the items are the independent units).

>>> import pandas as pd
>>> frame = pd.DataFrame({
...     "prompt": ["p1"] * 3 + ["p2"] * 3 + ["p3"] * 3,
...     "response_a": ["x", "y", "x"] + ["u", "u", "v"] + ["s", "s", "s"],
...     "response_b": ["y", "x", "y"] + ["v", "v", "u"] + ["t", "t", "t"],
...     "label": [0, 1, 0] + [1, 1, 0] + [2, 2, 2],
...     "annotator": ["ann", "bob", "cy"] * 3,
... })
>>> result = agreement(frame, min_shared=3, n_bootstrap=0)
>>> result.krippendorff.estimate, result.fleiss.estimate
(1.0, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from crowdtune.tables import json_records

#: Columns :func:`agreement` reads.
COLUMNS = ("prompt", "response_a", "response_b", "label", "annotator")
#: Nominal categories, in canonical order: first response better, second better, tie.
CATEGORIES = (0, 1, 2)


@dataclass(frozen=True)
class Coefficient:
    """One agreement coefficient with its bootstrap interval.

    ``n_items`` items entered it; ``n_raters`` is the number of raters per item where the
    coefficient needs a fixed number (Fleiss), else ``None``.
    """

    method: str
    estimate: float
    ci_low: float
    ci_high: float
    n_items: int
    n_raters: int | None
    confidence: float

    def to_dict(self) -> dict[str, object]:
        """The fields as a flat dict (NaN as ``None``), ready for JSON."""
        return {k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip


@dataclass(frozen=True)
class Agreement:
    """Agreement among the annotators of a comparisons frame (see :func:`agreement`).

    Parameters
    ----------
    pairwise : pandas.DataFrame
        ``annotator_1, annotator_2, n_shared, kappa, observed``: Cohen's kappa and the share of
        equal labels, for every pair with at least ``min_shared`` shared items.
    majority : pandas.DataFrame
        ``annotator, n_items, agreement, ci_low, ci_high``: the share of an annotator's items on
        which their label equals the majority of the others' labels (Wilson interval).
    fleiss, krippendorff : Coefficient
        Fleiss' kappa and Krippendorff's nominal alpha with bootstrap intervals over items.
    n_items : int
        Items with at least two votes (distinct annotators).
    n_annotators, n_votes : int
        Annotators and votes on those items.
    n_repeats : int
        Votes of an annotator on content they had already voted on; each repeat is matched with
        the other annotators' repeats, in order, as an item of its own.
    """

    pairwise: pd.DataFrame
    majority: pd.DataFrame
    fleiss: Coefficient
    krippendorff: Coefficient
    n_items: int
    n_annotators: int
    n_votes: int
    n_repeats: int

    @property
    def mean_cohen_kappa(self) -> float:
        """Mean of the pairwise kappas weighted by their shared items (NaN without pairs)."""
        valid = self.pairwise.dropna(subset=["kappa"])
        if valid.empty:
            return float("nan")
        return float(np.average(valid.kappa, weights=valid.n_shared))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary with both tables as lists of rows."""
        mean = self.mean_cohen_kappa
        return {
            "n_items": self.n_items,
            "n_annotators": self.n_annotators,
            "n_votes": self.n_votes,
            "n_repeats": self.n_repeats,
            "fleiss_kappa": self.fleiss.to_dict(),
            "krippendorff_alpha": self.krippendorff.to_dict(),
            "mean_cohen_kappa": None if np.isnan(mean) else mean,
            "pairwise": json_records(self.pairwise),
            "majority": json_records(self.majority),
        }


def canonical_votes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per vote: ``item`` (int id of prompt + unordered response pair), ``annotator``,
    ``label`` in canonical order (responses sorted by text; 0 = the first of them better) and
    ``swapped`` (the row showed the canonical second response as A).

    Raises
    ------
    ValueError
        For a missing column, a missing annotator or a label outside {0, 1, 2}, naming the row.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"comparisons frame lacks column(s) {missing}; it has {list(frame.columns)}"
        )
    if frame["annotator"].isna().any():
        row = int(np.flatnonzero(frame["annotator"].isna().to_numpy())[0])
        raise ValueError(
            f"comparisons frame: row {row} has no annotator; agreement needs one per vote"
        )
    labels = frame["label"].to_numpy()
    if not np.isin(labels, CATEGORIES).all():
        row = int(np.flatnonzero(~np.isin(labels, CATEGORIES))[0])
        raise ValueError(
            f"comparisons frame: row {row} has label {labels[row]!r}; expected 0, 1 or 2"
        )
    a, b = frame["response_a"].to_numpy(dtype=object), frame["response_b"].to_numpy(dtype=object)
    swap = a > b
    canonical = pd.DataFrame({
        "prompt": frame["prompt"].to_numpy(),
        "first": np.where(swap, b, a),
        "second": np.where(swap, a, b),
    })  # fmt: skip
    return pd.DataFrame({
        "item": canonical.groupby(["prompt", "first", "second"], sort=False).ngroup().to_numpy(),
        "annotator": frame["annotator"].astype(str).to_numpy(),
        "label": np.where(swap & (labels < 2), 1 - labels, labels).astype(np.int64),
        "swapped": swap.astype(bool),
    })  # fmt: skip


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _bootstrap_items(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``statistic(rows)`` for ``n_bootstrap`` resamples of the item rows (NaN where undefined)."""
    out = np.empty(n_bootstrap)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, rows in enumerate(rng.integers(0, n_items, size=(n_bootstrap, n_items))):
            out[k] = statistic(rows)
    return out


def majority_of_others(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    counts: np.ndarray,
    names: np.ndarray,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Each annotator's agreement with the majority of the *other* votes on their items.

    ``item``, ``annotator`` (index into ``names``) and ``label`` describe one vote each;
    ``counts`` (items, 3) holds every item's votes per category, the vote's own included. Items
    where the others' most common label is tied (or where nobody else voted) are left out.

    Returns
    -------
    pandas.DataFrame
        ``annotator, n_items, agreement, ci_low, ci_high`` (Wilson interval), most items first.
    """
    others = counts[item].copy()
    others[np.arange(len(label)), label] -= 1
    top = others.max(axis=1)
    decided = ((others == top[:, None]).sum(axis=1) == 1) & (top > 0)
    right = others[decided].argmax(axis=1) == label[decided]
    hits = np.bincount(annotator[decided], weights=right, minlength=len(names))
    n_decided = np.bincount(annotator[decided], minlength=len(names))
    low, high = proportion_confint(hits, np.maximum(n_decided, 1), 1 - confidence, method="wilson")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = hits / n_decided
    majority = pd.DataFrame({
        "annotator": names, "n_items": n_decided, "agreement": share,
        "ci_low": np.where(n_decided > 0, low, np.nan),
        "ci_high": np.where(n_decided > 0, high, np.nan),
    })  # fmt: skip
    return majority.sort_values(
        ["n_items", "annotator"], ascending=[False, True], ignore_index=True
    )


def agreement(
    frame: pd.DataFrame,
    *,
    min_shared: int = 10,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Agreement:
    """Inter-annotator agreement of a comparisons frame (see the module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`crowdtune.records.comparisons_frame`: ``prompt``, ``response_a``, ``response_b``,
        ``label`` and ``annotator`` are read. Items voted on by one annotator only are ignored.
    min_shared : int, default 10
        Fewest shared items for a pair of annotators to get a Cohen's kappa.
    n_bootstrap : int, default 1000
        Bootstrap resamples of the items for the intervals of Fleiss' kappa and Krippendorff's
        alpha (0 for none).
    confidence : float, default 0.95
        Coverage of every interval.
    seed : int, optional
        Seed of the resampling.

    Returns
    -------
    Agreement

    Raises
    ------
    ValueError
        For a malformed frame (see :func:`canonical_votes`), no item with two annotators, or
        ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    votes = canonical_votes(frame)
    # An annotator's k-th vote on identical content joins the others' k-th votes as one item:
    # sources repeat content (PandaLM has rows where different model pairs wrote the same
    # texts), and merging those would drop votes.
    votes["occurrence"] = votes.groupby(["item", "annotator"]).cumcount()
    n_repeats = int((votes["occurrence"] > 0).sum())
    ratings = votes.pivot(index=["item", "occurrence"], columns="annotator", values="label")
    ratings = ratings[ratings.notna().sum(axis=1) >= 2]
    if ratings.empty:
        raise ValueError("no item has votes from two different annotators; agreement is undefined")
    ratings = ratings.loc[:, ratings.notna().any()]
    matrix = ratings.to_numpy(dtype=float)  # (items, annotators), NaN where not voted
    annotators = ratings.columns.to_numpy()
    counts = np.stack([(matrix == c).sum(axis=1) for c in CATEGORIES], axis=1)  # (items, 3)
    raters = counts.sum(axis=1)
    rng = np.random.default_rng(seed)

    # Fleiss: items with the most common number of raters (the statistic needs a fixed number).
    n_raters = int(np.bincount(raters).argmax())
    fixed = counts[raters == n_raters]
    fleiss_boot = _bootstrap_items(
        lambda rows: fleiss_kappa(fixed[rows]), len(fixed), n_bootstrap, rng
    )
    fleiss = Coefficient("fleiss_kappa", float(fleiss_kappa(fixed)),
                         *_percentile_interval(fleiss_boot, confidence),
                         n_items=len(fixed), n_raters=n_raters, confidence=confidence)  # fmt: skip

    def alpha(value_counts: np.ndarray) -> float:
        return float(krippendorff.alpha(value_counts=value_counts, value_domain=list(CATEGORIES),
                                        level_of_measurement="nominal"))  # fmt: skip

    alpha_boot = _bootstrap_items(lambda rows: alpha(counts[rows]), len(counts), n_bootstrap, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha_estimate = alpha(counts)
    kripp = Coefficient("krippendorff_alpha_nominal", alpha_estimate,
                        *_percentile_interval(alpha_boot, confidence),
                        n_items=len(counts), n_raters=None, confidence=confidence)  # fmt: skip

    voted = ~np.isnan(matrix)
    shared = voted.T.astype(np.int64) @ voted  # (annotators, annotators) shared items
    pairs = []
    for i, j in zip(*np.triu_indices(len(annotators), k=1), strict=True):
        if shared[i, j] < max(min_shared, 1):
            continue
        both = voted[:, i] & voted[:, j]
        x, y = matrix[both, i].astype(int), matrix[both, j].astype(int)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            kappa = cohen_kappa_score(x, y, labels=list(CATEGORIES))
        pairs.append((annotators[i], annotators[j], int(shared[i, j]), float(kappa),
                      float(np.mean(x == y))))  # fmt: skip
    pairwise = pd.DataFrame(
        pairs, columns=["annotator_1", "annotator_2", "n_shared", "kappa", "observed"]
    ).sort_values("n_shared", ascending=False, kind="stable", ignore_index=True)

    item_row, column = np.nonzero(voted)
    majority = majority_of_others(
        item_row, column, matrix[item_row, column].astype(int), counts, annotators, confidence
    )

    return Agreement(
        pairwise=pairwise,
        majority=majority,
        fleiss=fleiss,
        krippendorff=kripp,
        n_items=len(counts),
        n_annotators=len(annotators),
        n_votes=int(raters.sum()),
        n_repeats=n_repeats,
    )
