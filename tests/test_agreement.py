"""Inter-annotator agreement: hand-checked cases, canonical A/B order, real PandaLM and MT-Bench."""

import json

import numpy as np
import pandas as pd
import pytest

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference.agreement import agreement, canonical_votes
from crowdtune.records import comparisons_frame


def votes_frame(labels: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """A comparisons frame from canonical labels (items, annotators); NaN = no vote.

    Each vote is shown in a random A/B order, so only canonicalisation can recover the items.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for item, annotator in zip(*np.nonzero(~np.isnan(labels)), strict=True):
        label = int(labels[item, annotator])
        first, second = f"answer {item} one", f"answer {item} two"  # first < second as text
        if rng.random() < 0.5:
            first, second = second, first
            label = {0: 1, 1: 0, 2: 2}[label]
        rows.append((f"prompt {item}", first, second, label, f"annotator{annotator}"))
    return pd.DataFrame(rows, columns=["prompt", "response_a", "response_b", "label", "annotator"])


def test_perfect_agreement_gives_one_everywhere():
    labels = np.repeat(np.random.default_rng(1).integers(0, 3, 60)[:, None], 4, axis=1)
    result = agreement(votes_frame(labels.astype(float)), n_bootstrap=50)
    assert result.fleiss.estimate == pytest.approx(1.0)
    assert result.krippendorff.estimate == pytest.approx(1.0)
    assert np.allclose(result.pairwise.kappa, 1.0) and len(result.pairwise) == 6
    assert np.allclose(result.majority.agreement, 1.0)
    assert (result.fleiss.n_items, result.fleiss.n_raters) == (60, 4)


def test_independent_random_labels_agree_near_zero():
    labels = np.random.default_rng(2).integers(0, 3, size=(3000, 3)).astype(float)
    result = agreement(votes_frame(labels), n_bootstrap=200)
    assert abs(result.fleiss.estimate) < 0.03
    assert abs(result.krippendorff.estimate) < 0.03
    assert np.all(np.abs(result.pairwise.kappa) < 0.05)
    assert result.fleiss.ci_low < 0 < result.fleiss.ci_high
    assert result.krippendorff.ci_low < 0 < result.krippendorff.ci_high


def test_fleiss_kappa_on_a_hand_computed_example():
    # Counts per item (A, B, tie) with 3 raters: (3,0,0), (0,3,0), (2,1,0), (0,1,2).
    # P_i = 1, 1, 1/3, 1/3 -> P = 2/3; p_j = 5/12, 5/12, 2/12 -> P_e = 54/144 = 3/8;
    # kappa = (2/3 - 3/8) / (1 - 3/8) = 7/15.
    labels = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 1], [1, 2, 2]], dtype=float)
    result = agreement(votes_frame(labels, seed=3), min_shared=4, n_bootstrap=0)
    assert result.fleiss.estimate == pytest.approx(7 / 15)
    assert np.isnan(result.fleiss.ci_low)


def test_cohen_kappa_on_a_hand_computed_example():
    # Observed agreement 8/10; both annotators' margins are (0.4, 0.4, 0.2), so the chance
    # agreement is 0.16 + 0.16 + 0.04 = 0.36 and kappa = (0.8 - 0.36) / 0.64 = 0.6875.
    x = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    y = [0, 0, 0, 1, 1, 1, 1, 0, 2, 2]
    result = agreement(votes_frame(np.array([x, y], dtype=float).T), n_bootstrap=0)
    row = result.pairwise.iloc[0]
    assert row.kappa == pytest.approx(0.6875)
    assert (row.n_shared, row.observed) == (10, pytest.approx(0.8))


def test_reversed_sides_are_the_same_item():
    frame = pd.DataFrame({
        "prompt": ["p", "p"], "response_a": ["x", "y"], "response_b": ["y", "x"],
        "label": [0, 1], "annotator": ["ann", "bob"],
    })  # fmt: skip
    votes = canonical_votes(frame)
    assert votes.item.nunique() == 1 and votes.label.nunique() == 1


def test_majority_of_the_others_by_hand():
    # Item 0: all say A. Item 1: two say A, annotator2 says B. Item 2: A, B, tie: no majority.
    labels = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 2]], dtype=float)
    result = agreement(votes_frame(labels), min_shared=1, n_bootstrap=0)
    majority = result.majority.set_index("annotator")
    # annotator0 and annotator1: on item 1 the others are (A, B), tied, so only item 0 counts.
    assert majority.loc["annotator0"].n_items == 1 and majority.loc["annotator0"].agreement == 1
    # annotator2: items 0 and 1 are decided (A); agrees on item 0 only.
    assert majority.loc["annotator2"].n_items == 2 and majority.loc["annotator2"].agreement == 0.5


def test_repeated_content_is_kept_as_separate_items():
    # Two rows with the same texts (as PandaLM has), each voted on by both annotators.
    frame = pd.DataFrame({
        "prompt": ["p"] * 4, "response_a": ["x", "y", "x", "x"], "response_b": ["y", "x", "y", "y"],
        "label": [0, 1, 2, 2], "annotator": ["ann", "bob", "ann", "bob"],
    })  # fmt: skip
    result = agreement(frame, min_shared=1, n_bootstrap=0)
    assert (result.n_items, result.n_repeats) == (2, 2)
    assert result.pairwise.kappa.iloc[0] == pytest.approx(1.0)


def test_bad_frames_are_named():
    frame = votes_frame(np.array([[0, 0]], dtype=float))
    with pytest.raises(ValueError, match="lacks column"):
        agreement(frame.drop(columns="annotator"))
    with pytest.raises(ValueError, match="two different annotators"):
        agreement(frame.assign(annotator="same"))
    with pytest.raises(ValueError, match="row 0 has no annotator"):
        agreement(frame.assign(annotator=None))


def test_pandalm_annotators_agree_as_the_authors_report():
    result = agreement(comparisons_frame(load_comparisons("@pandalm:annotators")), n_bootstrap=200)
    assert (result.n_items, result.n_annotators) == (999, 3)
    assert len(result.pairwise) == 3 and (result.pairwise.n_shared == 999).all()
    # The authors kept items with Cohen's kappa about 0.85-0.88; measured 0.848, 0.876, 0.858.
    assert result.pairwise.kappa.between(0.83, 0.90).all()
    assert result.fleiss.estimate == pytest.approx(0.864, abs=0.005)
    assert result.krippendorff.estimate == pytest.approx(result.fleiss.estimate, abs=0.005)
    assert result.fleiss.ci_low < result.fleiss.estimate < result.fleiss.ci_high
    assert json.loads(json.dumps(result.to_dict()))["n_items"] == 999


def test_mt_bench_agreement_across_many_judges():
    result = agreement(comparisons_frame(load_comparisons("@mt-bench")), n_bootstrap=200)
    assert result.n_annotators > 40 and result.n_items > 300
    alpha = result.krippendorff
    assert 0.3 < alpha.estimate < 0.7 and alpha.ci_low < alpha.estimate < alpha.ci_high
    assert result.fleiss.n_raters == 2
    assert result.majority.agreement.between(0, 1).all()
