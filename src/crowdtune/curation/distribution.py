"""Whether a test set of texts is distributed like a training set, and which texts fall outside.

Follows "Investigating collapse on RL fine-tuning data distribution" (issue #5): every text is
described by its linguistic features (:func:`crowdtune.curation.linguistic.text_features`); here
the two sets are compared feature by feature and as whole distributions, the test texts that lie
outside the training distribution are flagged (:func:`compare_distributions`), and a reward
model's scores are checked against human scores on matched and mismatched texts
(:func:`score_agreement`).

Choices, and why:

- Tests per feature: two-sided Kolmogorov–Smirnov and Mann–Whitney U, with Cliff's delta
  (= the rank-biserial correlation, test vs train) and the standardized mean difference (Cohen's
  d, pooled SD), both with analytic 95% intervals. p-values are corrected by Benjamini–Hochberg
  (false discovery rate over the features of one comparison; the features are correlated, and
  BH stays valid under the positive dependence these share while being less conservative than
  Holm).
- Jensen–Shannon divergence of the pooled POS and lemma distributions, with a bootstrap interval
  and a permutation baseline (:func:`crowdtune.curation.divergence.jensen_shannon`).
- Mismatch flags of each test text: the published rule (any feature outside the train
  mean ± 1.96 SD; the features named) and a Mahalanobis distance; the rule's flag rate on the
  training texts themselves is reported as its false-alarm baseline.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from crowdtune.curation.divergence import JSDResult, jensen_shannon, top_lemmas
from crowdtune.curation.linguistic import (
    BASE_FEATURES,
    POS_COLUMNS,
    UPOS_TAGS,
    TextAnalysis,
    aligned_lemma_counts,
)
from crowdtune.stats import Correlation, correlation

__all__ = [
    "MAIN_FEATURES",
    "FeatureTest",
    "DistributionComparison",
    "ScoreAgreement",
    "feature_tests",
    "mismatch_rule",
    "mahalanobis_mismatch",
    "compare_distributions",
    "score_agreement",
]

#: The features the report plots and the mismatch rules use by default: the published ones
#: (sentence length, sentiment) plus size, vocabulary, repetition and the six commonest POS shares.
MAIN_FEATURES = (
    "mean_sentence_tokens",
    "n_sentences",
    "n_tokens",
    "type_token_ratio",
    "repetition",
    "sentiment_compound",
    "pos_NOUN",
    "pos_VERB",
    "pos_ADJ",
    "pos_ADV",
    "pos_PRON",
    "pos_PUNCT",
)
#: Heavy-tailed count features, taken as log1p before the Mahalanobis distance.
_LOG_FEATURES = ("n_sentences", "mean_sentence_tokens", "n_tokens")
_Z95 = scipy.stats.norm.ppf(0.975)


# ---------------------------------------------------------------------------------------------
# tests per feature


@dataclass(frozen=True)
class FeatureTest:
    """Two-sample tests of one feature (test set against train set)."""

    feature: str
    n_train: int
    n_test: int
    train_mean: float
    test_mean: float
    train_median: float
    test_median: float
    ks_statistic: float
    ks_p: float
    ks_p_adjusted: float
    mannwhitney_u: float
    mannwhitney_p: float
    mannwhitney_p_adjusted: float
    cliffs_delta: float
    cliffs_delta_low: float
    cliffs_delta_high: float
    smd: float
    smd_low: float
    smd_high: float


def _cliffs_delta(u: float, n1: int, n2: int) -> tuple[float, float, float]:
    """Cliff's delta from U (of the first sample) with a Hanley–McNeil 95% interval."""
    auc = u / (n1 * n2)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n2 - 1) * (q2 - auc**2)) / (n1 * n2)
    half = 2 * _Z95 * np.sqrt(max(var, 0.0))
    delta = 2 * auc - 1
    return delta, max(-1.0, delta - half), min(1.0, delta + half)


def _smd(test: np.ndarray, train: np.ndarray) -> tuple[float, float, float]:
    """Cohen's d (pooled SD), test minus train, with the usual large-sample 95% interval."""
    n1, n2 = len(test), len(train)
    pooled = np.sqrt(((n1 - 1) * test.var(ddof=1) + (n2 - 1) * train.var(ddof=1)) / (n1 + n2 - 2))
    diff = test.mean() - train.mean()
    if pooled == 0:
        d = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
        return d, d, d
    d = float(diff / pooled)
    se = np.sqrt((n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2)))
    return d, d - _Z95 * se, d + _Z95 * se


def feature_tests(
    train: pd.DataFrame, test: pd.DataFrame, features: Sequence[str] | None = None
) -> pd.DataFrame:
    """KS and Mann–Whitney tests of each feature, effect sizes, BH-adjusted p-values.

    Parameters
    ----------
    train, test
        Feature frames (e.g. :attr:`TextAnalysis.features`); rows with ``empty`` set or a NaN in
        a feature are left out of that feature's test.
    features
        Columns to test; default :data:`BASE_FEATURES` and :data:`POS_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        One row per feature with the fields of :class:`FeatureTest`; effect sizes are test
        against train (positive: larger in the test set). A feature with fewer than 2 values in
        either set gets NaN statistics.
    """
    features = list(features if features is not None else (*BASE_FEATURES, *POS_COLUMNS))
    rows = []
    for name in features:
        a = _values(train, name)
        b = _values(test, name)
        nan = float("nan")
        if len(a) < 2 or len(b) < 2:
            rows.append(FeatureTest(name, len(a), len(b), *[nan] * 16))
            continue
        with warnings.catch_warnings():  # "exact calculation unsuccessful": asymptotic is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            ks = scipy.stats.ks_2samp(b, a)
        if np.all(a == a[0]) and np.all(b == a[0]):  # identical constants: no evidence at all
            u, p_mw = len(a) * len(b) / 2, 1.0
        else:
            mw = scipy.stats.mannwhitneyu(b, a, alternative="two-sided")
            u, p_mw = float(mw.statistic), float(mw.pvalue)
        delta = _cliffs_delta(u, len(b), len(a))
        rows.append(
            FeatureTest(
                name,
                len(a),
                len(b),
                float(a.mean()),
                float(b.mean()),
                float(np.median(a)),
                float(np.median(b)),
                float(ks.statistic),
                float(ks.pvalue),
                nan,
                u,
                p_mw,
                nan,
                *delta,
                *_smd(b, a),
            )  # fmt: skip
        )
    table = pd.DataFrame([r.__dict__ for r in rows])
    for column in ("ks_p", "mannwhitney_p"):
        tested = table[column].notna()
        if tested.any():
            table.loc[tested, f"{column}_adjusted"] = scipy.stats.false_discovery_control(
                table.loc[tested, column].to_numpy(), method="bh"
            )
    return table


def _values(frame: pd.DataFrame, name: str) -> np.ndarray:
    values = frame.loc[~frame["empty"].astype(bool), name].to_numpy(dtype=float)
    return values[np.isfinite(values)]


# ---------------------------------------------------------------------------------------------
# mismatch flags


def mismatch_rule(
    train: pd.DataFrame,
    test: pd.DataFrame,
    features: Sequence[str] = MAIN_FEATURES,
    z: float = 1.96,
) -> pd.DataFrame:
    """The published rule: a test text is mismatched if any feature lies outside train mean ± z·SD.

    Parameters
    ----------
    train, test
        Feature frames; the train mean and SD (ddof=1) are over non-empty train rows, NaNs
        ignored. A NaN feature of a test text never flags it.
    features
        The features checked.
    z
        Half-width in SDs (1.96 as published).

    Returns
    -------
    pandas.DataFrame
        One row per test row (same index): ``rule_mismatch`` (bool; False for empty texts),
        ``rule_n_features`` and ``rule_features`` (the flagged features, ``;``-joined, each
        with ``+`` for above or ``-`` for below, e.g. ``n_tokens+``).
    """
    features = list(features)
    reference = train.loc[~train["empty"].astype(bool), features].astype(float)
    mean = reference.mean().to_numpy()
    sd = reference.std(ddof=1).to_numpy()
    values = test[features].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        above = values > mean + z * sd
        below = values < mean - z * sd
    empty = test["empty"].to_numpy(dtype=bool)
    above[empty] = below[empty] = False
    names = [
        ";".join([f"{f}+" for f, hit in zip(features, up, strict=True) if hit]
                 + [f"{f}-" for f, hit in zip(features, down, strict=True) if hit])
        for up, down in zip(above, below, strict=True)
    ]  # fmt: skip
    count = above.sum(axis=1) + below.sum(axis=1)
    return pd.DataFrame(
        {"rule_mismatch": count > 0, "rule_n_features": count, "rule_features": names},
        index=test.index,
    )


def _design(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    values = frame[list(features)].to_numpy(dtype=float).copy()
    for j, name in enumerate(features):
        if name in _LOG_FEATURES:
            values[:, j] = np.log1p(values[:, j])
    return values


def mahalanobis_mismatch(
    train: pd.DataFrame,
    test: pd.DataFrame,
    features: Sequence[str] = MAIN_FEATURES,
    level: float = 0.95,
) -> pd.DataFrame:
    """Squared Mahalanobis distance of each test text from the train texts, and a flag.

    Why Mahalanobis rather than the any-feature rule or an isolation forest: the features are
    correlated (POS shares sum to one; token count, sentence count and sentence length move
    together), so checking each against ±1.96 SD flags far more than 5% of texts drawn from the
    training distribution itself, while one distance that accounts for the correlations gives
    a single test with a stated level (chi-square with p degrees of freedom under normality);
    an isolation forest has no such threshold (it needs an assumed contamination share) and is
    random. The count features are taken as log1p (they are heavy-tailed), every feature is
    standardized by the train mean and SD, and the covariance is Ledoit–Wolf shrunk, which keeps
    it invertible when shares are nearly collinear. Under heavy tails the chi-square level is
    only nominal: compare with the train set's own flag rate (:func:`compare_distributions`
    reports it).

    Returns
    -------
    pandas.DataFrame
        ``mahalanobis_d2`` (NaN for empty texts or texts with a NaN feature) and
        ``mahalanobis_mismatch`` (d² above the chi-square ``level`` quantile), index of ``test``.
    """
    from sklearn.covariance import LedoitWolf

    features = list(features)
    x = _design(train, features)
    keep = ~train["empty"].to_numpy(dtype=bool) & np.isfinite(x).all(axis=1)
    x = x[keep]
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    sd[sd == 0] = 1.0
    model = LedoitWolf().fit((x - mean) / sd)
    y = (_design(test, features) - mean) / sd
    finite = np.isfinite(y).all(axis=1) & ~test["empty"].to_numpy(dtype=bool)
    d2 = np.full(len(test), np.nan)
    if finite.any():
        d2[finite] = model.mahalanobis(y[finite])
    threshold = scipy.stats.chi2.ppf(level, df=len(features))
    with np.errstate(invalid="ignore"):
        flag = d2 > threshold
    return pd.DataFrame({"mahalanobis_d2": d2, "mahalanobis_mismatch": flag}, index=test.index)


# ---------------------------------------------------------------------------------------------
# the whole comparison


@dataclass
class DistributionComparison:
    """Everything :func:`compare_distributions` finds; :meth:`to_dict` is the JSON summary.

    Attributes
    ----------
    train_features, test_features : pandas.DataFrame
        The feature frames (for plots and ``features.csv``).
    tests : pandas.DataFrame
        :func:`feature_tests` of every feature.
    pos_distribution : pandas.DataFrame
        Per tag: pooled token counts and shares in each set.
    jsd : dict of str to JSDResult
        ``"pos"`` and ``"lemma"``.
    top_lemmas : pandas.DataFrame
        The lemmas that contribute most to the lemma JSD, with their shares in each set.
    mismatch : pandas.DataFrame
        Per test text: ``empty``, the rule's and the Mahalanobis flags and details.
    rule_features, alpha
        Features used by the mismatch flags, and the level of the adjusted p-values counted.
    train_rule_rate, train_mahalanobis_rate : float
        The flag rates on the train texts themselves (the false-alarm baseline).
    """

    train_features: pd.DataFrame
    test_features: pd.DataFrame
    tests: pd.DataFrame
    pos_distribution: pd.DataFrame
    jsd: dict[str, JSDResult]
    top_lemmas: pd.DataFrame
    mismatch: pd.DataFrame
    rule_features: list[str]
    train_rule_rate: float
    train_mahalanobis_rate: float
    alpha: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        train_empty = int(self.train_features["empty"].sum())
        test_empty = int(self.test_features["empty"].sum())
        return {
            "n_train": len(self.train_features),
            "n_test": len(self.test_features),
            "n_train_empty": train_empty,
            "n_test_empty": test_empty,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-text rows)."""
        tested = self.mismatch.loc[~self.mismatch["empty"]]
        significant = self.tests[
            (self.tests["mannwhitney_p_adjusted"] < self.alpha)
            | (self.tests["ks_p_adjusted"] < self.alpha)
        ]
        flagged = self.mismatch.loc[self.mismatch["rule_mismatch"], "rule_features"]
        per_feature: dict[str, int] = {}
        for names in flagged:
            for name in filter(None, names.split(";")):
                per_feature[name] = per_feature.get(name, 0) + 1
        return {
            **self.counts(),
            "correction": "benjamini-hochberg",
            "alpha": self.alpha,
            "n_features_tested": int(self.tests["ks_p"].notna().sum()),
            "significant_features": significant["feature"].tolist(),
            "jsd": {key: value.to_dict() for key, value in self.jsd.items()},
            "mismatch": {
                "rule": "any feature outside train mean +/- 1.96 SD",
                "multivariate": "Mahalanobis d2 (Ledoit-Wolf) > chi2 0.95 quantile",
                "features": self.rule_features,
                "n_tested": len(tested),
                "rule_count": int(tested["rule_mismatch"].sum()),
                "rule_rate": _rate(tested["rule_mismatch"]),
                "rule_rate_on_train": self.train_rule_rate,
                "rule_count_by_feature": dict(sorted(per_feature.items(), key=lambda kv: -kv[1])),
                "mahalanobis_count": int(tested["mahalanobis_mismatch"].sum()),
                "mahalanobis_rate": _rate(tested["mahalanobis_mismatch"]),
                "mahalanobis_rate_on_train": self.train_mahalanobis_rate,
            },
            "tests": _records(self.tests),
            "pos_distribution": _records(self.pos_distribution),
            "top_lemmas": _records(self.top_lemmas),
            **self.extra,
        }


def _rate(flags: pd.Series) -> float:
    return float(flags.mean()) if len(flags) else float("nan")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            str(k): (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in row.items()
        }
        for row in frame.astype(object).to_dict("records")
    ]


def compare_distributions(
    train: TextAnalysis,
    test: TextAnalysis,
    *,
    rule_features: Sequence[str] = MAIN_FEATURES,
    n_boot: int = 200,
    n_permutations: int = 200,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = 0,
    test_ids: Sequence[str] | None = None,
) -> DistributionComparison:
    """Compare a test set of texts with a training set (see the module docstring for the methods).

    Parameters
    ----------
    train, test
        :func:`~crowdtune.curation.linguistic.text_features` of each set.
    rule_features
        Features of the mismatch flags.
    n_boot, n_permutations
        Resamples of the JSD bootstrap interval and permutation baseline.
    alpha
        Level at which BH-adjusted p-values count as significant in the summary.
    rng
        Seed or generator of the resamples.
    test_ids
        Ids of the test texts for the mismatch table (default 0, 1, ...).
    """
    rng = np.random.default_rng(rng)
    tests = feature_tests(train.features, test.features)
    pos_a, pos_b = train.pos_counts, test.pos_counts
    pos = pd.DataFrame({
        "tag": UPOS_TAGS, "train_count": pos_a.astype(int), "test_count": pos_b.astype(int),
        "train_share": pos_a / max(pos_a.sum(), 1), "test_share": pos_b / max(pos_b.sum(), 1),
    })  # fmt: skip
    pos_matrix = [
        (t.features[list(POS_COLUMNS)].fillna(0.0).to_numpy()
         * t.features["n_tokens"].to_numpy()[:, None]).round()
        for t in (train, test)
    ]  # fmt: skip
    lemma_a, lemma_b, vocabulary = aligned_lemma_counts(train, test)
    jsd = {
        "pos": jensen_shannon(*pos_matrix, what="pos", n_boot=n_boot,
                              n_permutations=n_permutations, rng=rng),
        "lemma": jensen_shannon(lemma_a, lemma_b, what="lemma", n_boot=n_boot,
                                n_permutations=n_permutations, rng=rng),
    }  # fmt: skip
    top = top_lemmas(lemma_a, lemma_b, vocabulary)
    flags = pd.concat(
        [mismatch_rule(train.features, test.features, rule_features),
         mahalanobis_mismatch(train.features, test.features, rule_features)], axis=1,
    )  # fmt: skip
    flags.insert(0, "empty", test.features["empty"].to_numpy(dtype=bool))
    flags.insert(0, "id", list(test_ids) if test_ids is not None else range(len(test)))
    non_empty = ~train.features["empty"].to_numpy(dtype=bool)
    self_rule = mismatch_rule(train.features, train.features, rule_features)["rule_mismatch"]
    self_maha = mahalanobis_mismatch(train.features, train.features, rule_features)
    return DistributionComparison(
        train_features=train.features,
        test_features=test.features,
        tests=tests,
        pos_distribution=pos,
        jsd=jsd,
        top_lemmas=top,
        mismatch=flags,
        rule_features=list(rule_features),
        train_rule_rate=_rate(self_rule[non_empty]),
        train_mahalanobis_rate=_rate(self_maha["mahalanobis_mismatch"][non_empty]),
        alpha=alpha,
    )


# ---------------------------------------------------------------------------------------------
# human and reward scores


@dataclass
class ScoreAgreement:
    """How reward-model scores agree with human scores, overall and on matched/mismatched texts.

    ``correlations``: per group (``all``, ``matched``, ``mismatched``) and method (``pearson``,
    ``spearman``) a :class:`~crowdtune.stats.Correlation`, or None where the group has
    fewer than 3 texts or constant scores. ``differences``: per score (``human``, ``reward``) a
    Mann–Whitney test of mismatched against matched texts with Cliff's delta and its 95%
    interval (positive: higher on mismatched texts).
    """

    n: int
    n_matched: int
    n_mismatched: int
    correlations: dict[str, dict[str, Correlation | None]]
    differences: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "n_matched": self.n_matched, "n_mismatched": self.n_mismatched,
            "correlations": {
                group: {m: (c.to_dict() if c is not None else None) for m, c in methods.items()}
                for group, methods in self.correlations.items()
            },
            "differences": self.differences,
        }  # fmt: skip


def _safe_correlation(
    x: np.ndarray, y: np.ndarray, method: str, n_boot: int, seed: int
) -> Correlation | None:
    try:
        return correlation(x, y, method, n_boot=n_boot, rng=seed)
    except ValueError:  # fewer than 3 points or a constant side: undefined, not an error
        return None


def score_agreement(
    human: np.ndarray | Sequence[float],
    reward: np.ndarray | Sequence[float],
    mismatched: np.ndarray | Sequence[bool],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> ScoreAgreement:
    """Pearson and Spearman correlation of human and reward scores with 95% bootstrap intervals.

    Parameters
    ----------
    human, reward
        Paired scores; pairs with a NaN on either side are left out.
    mismatched
        Per text, whether it was flagged outside the training distribution.
    n_boot, seed
        Bootstrap resamples and their seed
        (:func:`crowdtune.stats.correlation`).
    """
    h = np.asarray(human, dtype=float)
    r = np.asarray(reward, dtype=float)
    flag = np.asarray(mismatched, dtype=bool)
    if not (len(h) == len(r) == len(flag)):
        raise ValueError(
            f"human, reward and mismatched must have the same length; got {len(h)}, "
            f"{len(r)} and {len(flag)}"
        )
    keep = np.isfinite(h) & np.isfinite(r)
    h, r, flag = h[keep], r[keep], flag[keep]
    groups = {"all": np.ones(len(h), bool), "matched": ~flag, "mismatched": flag}
    correlations = {
        group: {m: _safe_correlation(h[mask], r[mask], m, n_boot, seed)
                for m in ("pearson", "spearman")}
        for group, mask in groups.items()
    }  # fmt: skip
    differences = {}
    for name, scores in (("human", h), ("reward", r)):
        a, b = scores[~flag], scores[flag]
        if len(a) < 1 or len(b) < 1 or np.all(scores == scores[0]):
            differences[name] = {"mannwhitney_u": float("nan"), "p": float("nan"),
                                 "cliffs_delta": float("nan"), "low": float("nan"),
                                 "high": float("nan")}  # fmt: skip
            continue
        test = scipy.stats.mannwhitneyu(b, a, alternative="two-sided")
        delta, low, high = _cliffs_delta(float(test.statistic), len(b), len(a))
        differences[name] = {
            "mannwhitney_u": float(test.statistic), "p": float(test.pvalue),
            "cliffs_delta": delta, "low": low, "high": high,
            "matched_mean": float(a.mean()), "mismatched_mean": float(b.mean()),
        }  # fmt: skip
    return ScoreAgreement(len(h), int((~flag).sum()), int(flag.sum()), correlations, differences)
