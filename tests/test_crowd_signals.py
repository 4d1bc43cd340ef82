"""Quality signals of rating and revision campaigns (crowd/signals): Krippendorff's alpha per
project and per rater, edit sizes and quality gains of revisions, gold accuracy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd
import pytest

from crowdtune.crowd.signals import (
    CONTRIBUTOR_COLUMNS,
    EDIT_COLUMNS,
    RATER_COLUMNS,
    alpha_replicates,
    quality_gains,
    rating_agreement,
    rating_gold_accuracy,
    revision_edits,
    revision_gold_accuracy,
    revision_signals,
    word_distance,
)
from crowdtune.datasets.car import item_text, split_item_text
from crowdtune.preference.agreement import Coefficient
from crowdtune.records import Rating, Revision, ratings_frame, revisions_frame

NAN = np.nan
Level = Literal["nominal", "ordinal", "interval"]


def rating(id: str, prompt: str, response: str, score: float, **fields: Any) -> Rating:
    return Rating(id, (prompt,), response, score, **fields)


def revision(id: str, prompt: str, original: str, revised: str, **fields: Any) -> Revision:
    return Revision(id, (prompt,), original, revised, **fields)


#: Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 coders × 12
#: units with missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
TEXTBOOK = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])  # fmt: skip


def hand_alpha(data: np.ndarray, level: Level) -> float:
    """Krippendorff's alpha by the book: the coincidence matrix and the metric of ``level``."""
    values = np.unique(data[~np.isnan(data)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in data.T:
        present = unit[~np.isnan(unit)]
        if len(present) < 2:
            continue
        for i, a in enumerate(present):
            for j, b in enumerate(present):
                if i != j:
                    o[index[a], index[b]] += 1 / (len(present) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = np.zeros_like(o)
    for c in range(len(values)):
        for k in range(len(values)):
            if level == "nominal":
                delta[c, k] = float(c != k)
            elif level == "interval":
                delta[c, k] = (values[c] - values[k]) ** 2
            else:  # ordinal: (sum of n_g from c to k - (n_c + n_k) / 2)²
                lo, hi = min(c, k), max(c, k)
                delta[c, k] = (n_c[lo : hi + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    return float(1 - (o * delta).sum() / expected)


def frame_of(matrix: np.ndarray) -> pd.DataFrame:
    """A ratings frame from a raters × items matrix (NaN = not rated)."""
    ratings = [
        rating(f"{u}/{r}", f"prompt {u}", f"answer {u}", float(matrix[r, u]), scale=(1, 7),
               contributor=f"coder{r}")
        for r in range(matrix.shape[0]) for u in range(matrix.shape[1])
        if not np.isnan(matrix[r, u])
    ]  # fmt: skip
    return ratings_frame(ratings)


def simulated(seed: int = 0, n_items: int = 80) -> pd.DataFrame:
    """Five raters scoring item quality with small noise, and one giving random scores."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 7, n_items)
    matrix = np.full((6, n_items), NAN)
    for r in range(6):
        rated = rng.random(n_items) < 0.6
        if r == 5:
            scores = rng.integers(1, 8, n_items).astype(float)
        else:
            scores = np.clip(np.rint(quality + rng.normal(0, 0.7, n_items)), 1, 7)
        matrix[r, rated] = scores[rated]
    return frame_of(matrix).assign(contributor=lambda f: f["contributor"].str.replace(
        "coder5", "random", regex=False))  # fmt: skip


# ------------------------------------------------------------------------------------ ratings


@pytest.mark.parametrize(
    ("level", "published"), [("interval", 0.849), ("ordinal", 0.815), ("nominal", 0.743)]
)
def test_hand_computation_gives_the_published_values(level: Level, published: float) -> None:
    assert round(hand_alpha(TEXTBOOK, level), 3) == published
    package = krippendorff.alpha(reliability_data=TEXTBOOK, level_of_measurement=level)
    assert package == pytest.approx(hand_alpha(TEXTBOOK, level), abs=1e-12)


def test_project_alpha_equals_the_package_and_the_textbook() -> None:
    result = rating_agreement(frame_of(TEXTBOOK), n_bootstrap=0)
    assert result.reason is None
    assert result.interval is not None and result.ordinal is not None
    checks: list[tuple[Literal["interval", "ordinal"], Coefficient, float]] = [
        ("interval", result.interval, 0.849), ("ordinal", result.ordinal, 0.815),
    ]  # fmt: skip
    for level, coefficient, published in checks:
        assert coefficient.estimate == pytest.approx(hand_alpha(TEXTBOOK, level), abs=1e-12)
        assert coefficient.estimate == pytest.approx(
            krippendorff.alpha(reliability_data=TEXTBOOK, level_of_measurement=level), abs=1e-12
        )
        assert round(coefficient.estimate, 3) == published
        assert np.isnan(coefficient.ci_low) and np.isnan(coefficient.ci_high)
    # Unit 12 has one value only: 11 items are shared, by 4 raters, with 40 ratings.
    assert (result.n_items, result.n_raters, result.n_ratings) == (11, 4, 40)


@pytest.mark.parametrize("level", ["interval", "ordinal"])
def test_bootstrap_replicates_equal_the_package_on_resampled_matrices(
    level: Literal["interval", "ordinal"],
) -> None:
    data = simulated(seed=3, n_items=25)
    table = data.pivot(index="prompt", columns="contributor", values="score")
    matrix = table.to_numpy(dtype=float)
    domain = np.unique(matrix[~np.isnan(matrix)])
    counts = (matrix[:, :, None] == domain).sum(axis=1)
    rng = np.random.default_rng(0)
    n = len(matrix)
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=6)])
    fast = alpha_replicates(counts, domain, weights, level)
    for w, value in zip(weights.astype(int), fast, strict=True):
        resampled = matrix[np.repeat(np.arange(len(matrix)), w)].T
        expected = krippendorff.alpha(reliability_data=resampled, level_of_measurement=level)
        assert value == pytest.approx(expected, abs=1e-10)


def test_random_rater_scores_clearly_below_consistent_raters() -> None:
    result = rating_agreement(simulated(), n_bootstrap=300, seed=1)
    raters = result.raters.set_index("contributor")
    assert list(result.raters.columns) == list(RATER_COLUMNS)
    consistent = raters.drop(index="random")
    for level in ("interval", "ordinal"):
        alphas = consistent[f"alpha_{level}"]
        assert alphas.min() > 0.6
        random_alpha = raters.loc["random", f"alpha_{level}"]
        assert random_alpha < alphas.min() - 0.3
        # Its whole interval lies below every consistent rater's estimate.
        assert raters.loc["random", f"{level}_ci_high"] < alphas.min()
        assert (consistent[f"{level}_ci_low"] <= alphas).all()
        assert (alphas <= consistent[f"{level}_ci_high"]).all()
    assert raters["reason"].isna().all()
    # The project's alpha: clearly positive, below the consistent raters' own level.
    assert result.interval is not None
    assert 0.3 < result.interval.estimate < alphas.max()
    assert result.interval.ci_low < result.interval.estimate < result.interval.ci_high
    # Dropping the random rater raises the project's alpha.
    clean = rating_agreement(simulated().query("contributor != 'random'"), n_bootstrap=0)
    assert clean.interval is not None and clean.interval.estimate > result.interval.estimate + 0.1


def test_rater_against_others_is_alpha_of_rater_and_consensus() -> None:
    result = rating_agreement(frame_of(TEXTBOOK), n_bootstrap=0)
    row = result.raters.set_index("contributor").loc["coder0"]
    others = TEXTBOOK[1:]
    shared = ~np.isnan(TEXTBOOK[0]) & (~np.isnan(others)).any(axis=0)
    assert row["n_items"] == shared.sum() == 9
    interval = np.vstack([TEXTBOOK[0, shared], np.nanmean(others[:, shared], axis=0)])
    ordinal = np.vstack([TEXTBOOK[0, shared], np.nanmedian(others[:, shared], axis=0)])
    assert row["alpha_interval"] == pytest.approx(hand_alpha(interval, "interval"), abs=1e-12)
    assert row["alpha_ordinal"] == pytest.approx(hand_alpha(ordinal, "ordinal"), abs=1e-12)


def test_intervals_are_seeded() -> None:
    frame = simulated(seed=2, n_items=30)
    a = rating_agreement(frame, n_bootstrap=200, seed=5).to_dict()
    b = rating_agreement(frame, n_bootstrap=200, seed=5).to_dict()
    c = rating_agreement(frame, n_bootstrap=200, seed=6).to_dict()
    assert a == b
    assert a["krippendorff_alpha_interval"] != c["krippendorff_alpha_interval"]
    json.dumps(a, allow_nan=False)


def test_degenerate_ratings_give_reasons_not_errors() -> None:
    empty = rating_agreement(ratings_frame([]))
    assert empty.interval is None and empty.ordinal is None and empty.reason == "no ratings yet"
    assert json.loads(json.dumps(empty.to_dict(), allow_nan=False))["raters"] == []

    alone = ratings_frame([
        rating("1", "p", "a", 3, contributor="ann"), rating("2", "p", "b", 5, contributor="bob"),
    ])  # fmt: skip
    result = rating_agreement(alone)
    assert result.interval is None and "two different contributors" in str(result.reason)
    assert set(result.raters["reason"]) == {"rated no item another contributor rated"}

    pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    same = ratings_frame(
        [rating(str(i), "p", r, 4, contributor=c) for i, (r, c) in enumerate(pairs)]
    )
    result = rating_agreement(same)
    assert result.interval is None and "without variation" in str(result.reason)
    assert result.raters["alpha_interval"].isna().all()
    json.dumps(result.to_dict(), allow_nan=False)

    # Two shared items are too few for one rater at min_items=3, enough for the project.
    two = frame_of(np.array([[1.0, 2.0, 5.0], [1.0, 3.0, NAN], [2.0, NAN, 5.0]]))
    result = rating_agreement(two, n_bootstrap=50, min_items=3)
    assert result.interval is not None
    raters = result.raters.set_index("contributor")
    assert raters["reason"].isna()["coder0"] and raters.loc["coder0", "n_items"] == 3
    assert raters.loc["coder1", "reason"] == "shares 2 item(s) with others; 3 needed"


def test_malformed_ratings_frames_are_errors_naming_the_row() -> None:
    frame = ratings_frame([rating("1", "p", "a", 3, contributor="ann"), rating("2", "p", "a", 4)])
    with pytest.raises(ValueError, match="row 1 has no contributor"):
        rating_agreement(frame)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['aspect_tone'\]"):
        rating_agreement(frame, column="aspect_tone")
    with pytest.raises(ValueError, match="confidence"):
        rating_agreement(frame, confidence=1.5)


def test_aspect_columns_skip_ratings_without_the_aspect() -> None:
    ratings = [
        rating(f"{i}{c}", f"p{i}", "a", s, aspects=({"tone": s} if c != "z" else None),
               contributor=c)
        for i in range(6) for c, s in (("x", 1 + i), ("y", 1 + i), ("z", 7 - i))
    ]  # fmt: skip
    frame = ratings_frame(ratings)
    by_score = rating_agreement(frame, n_bootstrap=0)
    by_tone = rating_agreement(frame, column="aspect_tone", n_bootstrap=0)
    assert by_tone.column == "aspect_tone" and by_tone.n_ratings == 12
    assert by_tone.interval is not None and by_tone.interval.estimate == pytest.approx(1.0)
    assert by_score.interval is not None and by_score.interval.estimate < 0.2


def test_repeated_content_is_kept_as_separate_items() -> None:
    # Two items with the same text, each rated once by both: two units, not one of four values.
    ratings = [
        rating(f"{k}{c}", "p", "same", s, contributor=c)
        for k, s in enumerate([2, 6]) for c in "xy"
    ]  # fmt: skip
    result = rating_agreement(ratings_frame(ratings), n_bootstrap=0)
    assert result.n_items == 2 and result.interval is not None
    assert result.interval.estimate == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- revisions


class WordCounter:
    """A cheap quality scorer: the number of words of the response; remembers what it scored."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        return np.array([len(split_item_text(t)[1].split()) for t in texts], dtype=float)


def revisions() -> pd.DataFrame:
    rows = [
        revision("1", "Name a colour.", "Blue", "Blue is a colour.", contributor="ann",
                 reference="Blue is a colour."),
        revision("2", "Add 2 and 3.", "It is 6.", "It is 5.", contributor="ann",
                 reference="2 + 3 = 5."),
        revision("3", "Add 2 and 3.", "It is 6.", " It is 6. ", contributor="bob",
                 reference="2 + 3 = 5."),
        revision("4", "Say hi.", "Hello there, friend.", "Hi.", contributor="bob"),
        revision("5", "Say hi.", "Hello there, friend.", "Hello there, my friend.",
                 contributor=None),
    ]  # fmt: skip
    return revisions_frame(rows)


def test_word_distance_counts_word_edits() -> None:
    assert word_distance("a b c", "a b c") == (0, 0.0)
    assert word_distance("a b c", "a x c d") == (2, 0.5)
    assert word_distance("", "") == (0, 0.0)
    assert word_distance("one two", "") == (2, 1.0)


def test_revision_edits_by_hand() -> None:
    edits = revision_edits(revisions())
    assert list(edits.columns) == list(EDIT_COLUMNS)
    assert edits["changed"].tolist() == [True, True, False, True, True]
    assert edits["edit_distance"].tolist() == [3, 1, 0, 3, 1]
    assert edits["normalized_distance"].tolist() == pytest.approx([3 / 4, 1 / 3, 0, 1, 1 / 4])
    assert edits["length_change"].tolist() == [3, 0, 0, -2, 1]


def test_revision_signals_per_project_and_contributor() -> None:
    scorer = WordCounter()
    result = revision_signals(revisions(), scorer)
    assert (result.n_revisions, result.n_items, result.n_contributors) == (5, 3, 2)
    assert result.unchanged_rate == pytest.approx(0.2)
    assert result.mean_edit_distance == pytest.approx(8 / 5)
    assert result.median_edit_distance == 1
    assert result.mean_length_change == pytest.approx(2 / 5)
    # The gains are the word-count changes; the unchanged answer gains 0 without being scored.
    assert result.edits["gain"].tolist() == [3, 0, 0, -2, 1]
    assert item_text("Add 2 and 3.", output="It is 6.") in scorer.seen
    assert len(scorer.seen) == len(set(scorer.seen)) == 7
    gain = result.gain
    assert gain is not None and result.gain_reason is None
    assert (gain.n, gain.n_changed) == (5, 4)
    assert gain.mean == pytest.approx(0.4)
    assert gain.ci_low is not None and gain.ci_high is not None
    assert gain.ci_low < 0.4 < gain.ci_high
    assert gain.quantiles["q50"] == 0 and gain.quantiles["q95"] == pytest.approx(2.6)
    assert (gain.share_positive, gain.share_negative) == (0.4, 0.2)
    table = result.contributors.set_index("contributor")
    assert list(result.contributors.columns) == list(CONTRIBUTOR_COLUMNS)
    assert table.loc["ann", "n_revisions"] == 2 and table.loc["ann", "unchanged_rate"] == 0
    assert table.loc["bob", "unchanged_rate"] == 0.5
    assert table.loc["ann", "mean_gain"] == 1.5 and table.loc["bob", "mean_gain"] == -1
    assert table.loc["ann", "share_positive"] == 0.5
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert "edits" not in out and out["gain"]["quantiles"]["q50"] == 0
    assert [row["contributor"] for row in out["contributors"]] == ["ann", "bob"]


def test_revision_signals_without_scorer_or_revisions() -> None:
    result = revision_signals(revisions())
    assert result.gain is None and result.gain_reason == "no quality scorer given"
    assert result.contributors["mean_gain"].isna().all()
    json.dumps(result.to_dict(), allow_nan=False)
    empty = revision_signals(revisions_frame([]), WordCounter())
    assert empty.n_revisions == 0 and empty.gain is None and empty.gain_reason == "no revisions yet"
    assert empty.unchanged_rate is None and empty.mean_edit_distance is None
    json.dumps(empty.to_dict(), allow_nan=False)


def test_a_scorer_returning_the_wrong_number_of_scores_is_an_error() -> None:
    class Broken:
        def score(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros(1)

    with pytest.raises(ValueError, match="returned"):
        quality_gains(revisions(), Broken())


def test_car_expert_revisions_gain_length() -> None:
    """Real data: on CaR's 254 test pairs the expert revision is longer 79.1% of the time (ties
    half), as the length rule of curation/quality.py measured."""
    from crowdtune.curation.quality import LengthScorer
    from crowdtune.datasets.car import CAR_EXPERT, load_car_revisions

    result = revision_signals(revisions_frame(load_car_revisions("test")), LengthScorer())
    assert result.gain is not None and result.gain.n == 254
    positive, negative = result.gain.share_positive, result.gain.share_negative
    assert positive is not None and negative is not None
    assert positive + (1 - positive - negative) / 2 == pytest.approx(0.791, abs=0.0005)
    assert result.gain.ci_low is not None and result.gain.ci_low > 0
    # 6 experts rewrote only the instruction, leaving the answer as it was.
    assert result.unchanged_rate == pytest.approx(6 / 254)
    assert result.mean_length_change is not None and result.mean_length_change > 0
    assert result.contributors["contributor"].tolist() == [CAR_EXPERT]
    # The expert revision is also the reference: every changed answer reaches it, and the 6
    # unchanged ones already were it (kept: right).
    gold = revision_gold_accuracy(revisions_frame(load_car_revisions("test")))
    assert (gold.n_gold, gold.n_correct, gold.mean_similarity) == (254, 254, 1.0)
    assert gold.mean_similarity_original is not None and gold.mean_similarity_original < 0.5


# --------------------------------------------------------------------------------------- gold


def test_rating_gold_accuracy() -> None:
    frame = ratings_frame([
        rating("1", "p1", "a", 5, contributor="ann"), rating("2", "p1", "a", 2, contributor="bob"),
        rating("3", "p2", "b", 4, contributor="ann"), rating("4", "p2", "b", 7, contributor="bob"),
        rating("5", "p3", "c", 1, contributor="bob"),
    ]).assign(gold_low=[4, 4, 4, 4, NAN], gold_high=[6, 6, 4, 4, NAN])  # fmt: skip
    result = rating_gold_accuracy(frame)
    assert (result.kind, result.n_gold, result.n_correct, result.accuracy) == ("rating", 4, 2, 0.5)
    assert result.mean_miss == pytest.approx((0 + 2 + 0 + 3) / 4)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0.5 < result.ci_high
    table = result.contributors.set_index("contributor")
    assert table.loc["ann", "accuracy"] == 1 and table.loc["bob", "accuracy"] == 0
    assert table.loc["bob", "mean_miss"] == 2.5 and table.loc["bob", "n_gold"] == 2
    json.dumps(result.to_dict(), allow_nan=False)

    none = rating_gold_accuracy(frame.assign(gold_low=NAN, gold_high=NAN))
    assert none.accuracy is None and none.reason == "no rating on a gold item yet"
    assert none.contributors.empty
    with pytest.raises(ValueError, match="row 4 has one gold bound"):
        rating_gold_accuracy(frame.assign(gold_low=[4, 4, 4, 4, 1]))
    with pytest.raises(ValueError, match="row 0 has gold_low 7 > gold_high 6"):
        rating_gold_accuracy(frame.assign(gold_low=[7, 4, 4, 4, NAN]))
    with pytest.raises(ValueError, match="gold_low"):
        rating_gold_accuracy(frame.drop(columns=["gold_low"]))


def test_revision_gold_accuracy() -> None:
    frame = revisions()
    result = revision_gold_accuracy(frame)
    # Row 1 reached the reference; row 2 moved towards it (6 -> 5); row 3 was left unchanged.
    assert (result.kind, result.n_gold, result.n_correct) == ("revision", 3, 2)
    assert result.accuracy == pytest.approx(2 / 3)
    sim_1, sim_2 = 1.0, 1 - word_distance("It is 5.", "2 + 3 = 5.")[1]
    sim_3 = 1 - word_distance("It is 6.", "2 + 3 = 5.")[1]
    assert result.mean_similarity == pytest.approx((sim_1 + sim_2 + sim_3) / 3)
    assert result.mean_similarity_original == pytest.approx(
        (1 - word_distance("Blue", "Blue is a colour.")[1] + 2 * sim_3) / 3
    )
    table = result.contributors.set_index("contributor")
    assert table.loc["ann", "accuracy"] == 1 and table.loc["bob", "accuracy"] == 0
    assert table.loc["ann", "mean_similarity"] == pytest.approx((sim_1 + sim_2) / 2)

    # An answer that already was the reference is right to keep and wrong to change.
    kept = revisions_frame([
        revision("k", "p", "Good.", "Good.", contributor="x", reference="Good."),
        revision("c", "p", "Good.", "Good!", contributor="y", reference="Good."),
    ])  # fmt: skip
    assert revision_gold_accuracy(kept).contributors["n_correct"].tolist() == [1, 0]
    none = revision_gold_accuracy(frame.assign(reference=None))
    assert none.accuracy is None and none.reason == "no revision on a gold item yet"
    json.dumps(none.to_dict(), allow_nan=False)
