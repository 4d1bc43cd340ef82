"""Dawid–Skene over A/B/tie votes: a simulated crowd with known truth, A/B symmetry, real PandaLM
and MT-Bench, and crowd-kit's DawidSkene on the same votes where it is installed."""

import numpy as np
import pandas as pd
import pytest

from crowdtune.datasets.registry import load_comparisons
from crowdtune.preference import LengthModel
from crowdtune.preference.agreement import canonical_votes
from crowdtune.preference.reliability import (
    confusion,
    dawid_skene,
    item_labels,
    reliability_weights,
    simulate_votes,
    soft_labels,
)
from crowdtune.records import comparisons_frame

#: 8 oracle-ish annotators (accuracy 0.8), a contrarian (annotator8), a random voter (annotator9).
CROWD = [confusion(0.8)] * 8 + [confusion(0.0), confusion(1 / 3)]


def test_simulated_crowd_recovers_accuracies_and_ranks_the_bad_voters_last():
    for seed in range(5):
        frame, truth = simulate_votes(CROWD, n_items=200, seed=seed)
        result = dawid_skene(frame, n_bootstrap=0)
        accuracy = result.annotators.set_index("annotator").accuracy
        estimated = accuracy.reindex([f"annotator{j}" for j in range(10)]).to_numpy()
        # Within 0.05 of the accuracy each annotator showed on these 200 items (the nominal
        # 0.8 is itself only estimable to about +-0.03 from 200 votes).
        realised = (frame.label.to_numpy() == truth).reshape(200, 10).mean(axis=0)
        assert np.abs(estimated - realised).max() < 0.05, (seed, estimated, realised)
        assert set(result.annotators.annotator[:2]) == {"annotator8", "annotator9"}
        assert (result.row_posteriors().argmax(axis=1) == truth).mean() > 0.97
        assert result.priors[2] == pytest.approx((truth == 2).mean(), abs=0.03)


def test_posteriors_follow_each_rows_sides_and_ignore_the_shown_order():
    frame, truth = simulate_votes(CROWD[:5], n_items=80, seed=3)
    swapped = frame.assign(
        response_a=frame.response_b, response_b=frame.response_a,
        label=np.where(frame.label < 2, 1 - frame.label, 2),
    )  # fmt: skip
    one, two = dawid_skene(frame, n_bootstrap=0), dawid_skene(swapped, n_bootstrap=0)
    assert np.allclose(one.annotators.accuracy, two.annotators.accuracy)
    assert np.allclose(one.row_posteriors(), two.row_posteriors()[:, [1, 0, 2]])
    assert one.priors[0] == one.priors[1]  # symmetric by construction
    row = one.items.iloc[0]
    assert row.p_a + row.p_b + row.p_tie == pytest.approx(1.0)


def test_bootstrap_intervals_cover_the_estimates_and_json_is_complete():
    frame, _ = simulate_votes(CROWD, n_items=100, seed=1)
    result = dawid_skene(frame, n_bootstrap=50, seed=0)
    table = result.annotators
    assert (
        (table.ci_low <= table.accuracy + 1e-9) & (table.accuracy <= table.ci_high + 1e-9)
    ).all()
    assert result.confusion.shape == (10, 3, 3) and result.confusion_ci.shape == (10, 3, 3, 2)
    assert np.allclose(result.confusion.sum(axis=2), 1)
    body = result.to_dict()
    assert body["n_items"] == 100 and body["n_votes"] == 1000 and len(body["items"]) == 100
    assert len(body["annotators"][0]["confusion"]) == 3 and "_swapped" not in body["items"][0]
    assert dawid_skene(frame, n_bootstrap=50, seed=0).annotators.equals(table)  # seeded


def test_majority_baseline_and_errors():
    frame = pd.DataFrame({
        "id": ["r0", "r1", "r2", "r3", "r4", "r5"], "prompt": ["p"] * 3 + ["q"] * 3,
        "response_a": ["x", "y", "x", "u", "u", "u"], "response_b": ["y", "x", "y", "v", "v", "v"],
        "label": [0, 1, 2, 2, 0, 1], "annotator": ["ann", "bob", "cy"] * 2,
    })  # fmt: skip
    result = dawid_skene(frame, n_bootstrap=0)
    items = result.items.set_index("id")
    assert items.loc["r0", "majority"] == 0 and items.loc["r0", "majority_a"] == pytest.approx(
        2 / 3
    )
    assert items.loc["r3", "majority"] == -1  # A, B, tie: no majority
    with pytest.raises(ValueError, match="confidence"):
        dawid_skene(frame, confidence=1.5)
    with pytest.raises(ValueError, match="no votes"):
        dawid_skene(frame.iloc[:0])


def test_pandalm_three_annotators():
    frame = comparisons_frame(load_comparisons("@pandalm:annotators"))
    result = dawid_skene(frame, n_bootstrap=0)
    assert len(result.items) == 999 and len(result.annotators) == 3
    assert (result.annotators.accuracy > 0.9).all()
    # PandaLM's gold label is the majority of the three; Dawid-Skene agrees on almost every item.
    assert result.agreement_with_majority > 0.98


def test_agrees_with_crowd_kit_on_the_same_votes():
    import crowdkit.aggregation as crowdkit  # dev extra; imported here: it loads transformers

    frame, _ = simulate_votes(CROWD, n_items=200, seed=1)
    votes = canonical_votes(frame)
    expected = (
        crowdkit.DawidSkene(n_iter=200, tol=1e-7)
        .fit(pd.DataFrame({"task": votes.item, "worker": votes.annotator, "label": votes.label}))
        .probas_.sort_index()[[0, 1, 2]]
        .to_numpy()
    )
    ours = dawid_skene(frame, n_bootstrap=0, symmetric=False, smoothing=1e-6)
    canonical = ours.row_posteriors()[~votes.swapped.to_numpy()]
    items = votes.item[~votes.swapped.to_numpy()].to_numpy()
    assert np.abs(canonical - expected[items]).max() < 0.01


def test_item_labels_collapse_each_items_votes_to_one_row():
    crowd = [confusion(0.85)] * 2 + [confusion(0.0)] * 2  # two good voters, two contrarians
    frame, truth = simulate_votes(crowd, n_items=150, seed=4)
    first = np.arange(0, len(frame), len(crowd))  # each item's first row
    skene = item_labels(frame, "dawid-skene")
    assert list(skene.columns) == list(frame.columns) and skene.id.tolist() == [
        f"item{i}" for i in range(150)
    ]
    assert (skene.label.to_numpy() == truth[first]).mean() > 0.9
    majority = item_labels(frame, "majority")
    assert len(majority) < 150  # a 2-2 split has no majority: left out
    kept = majority.id.str.removeprefix("item").astype(int).to_numpy() * len(crowd)
    assert (majority.label.to_numpy() == truth[kept]).mean() < 0.8  # contrarians drag it down
    # each item's label in its first row's A/B order: swapping that row's sides swaps it
    swapped = frame.copy()
    swapped.loc[0, ["response_a", "response_b"]] = frame.loc[0, ["response_b", "response_a"]].values
    swapped.loc[0, "label"] = {0: 1, 1: 0, 2: 2}[int(frame.label[0])]
    again = item_labels(swapped, "dawid-skene")
    assert again.label[0] == {0: 1, 1: 0, 2: 2}[int(skene.label[0])]
    # rows without an annotator are one vote each, not one annotator's repeats
    anonymous = item_labels(frame.assign(annotator=None), "majority")
    assert len(anonymous) == len(majority)
    with pytest.raises(ValueError, match="unknown labels 'soft'"):
        item_labels(frame, "soft")


def test_soft_labels_are_each_items_posterior_as_weights():
    crowd = [confusion(0.85)] * 2 + [confusion(0.0)] * 2
    frame, truth = simulate_votes(crowd, n_items=60, seed=4)
    rows = soft_labels(frame)
    assert len(rows) == 3 * 60 and rows.label.tolist() == [0, 1, 2] * 60
    assert list(rows.columns) == [*frame.columns, "weight"]
    weights = rows.weight.to_numpy().reshape(60, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    hard = item_labels(frame, "dawid-skene")
    assert (weights.argmax(axis=1) == hard.label.to_numpy()).all()
    assert rows.id.iloc[::3].tolist() == hard.id.tolist()


def test_posteriors_as_weights_fit_like_repeated_rows_on_mt_bench():
    """Soft labels through sample weights are exactly repeated rows: on MT-Bench's items, the
    posteriors rounded to quarters as weights fit the length model as the rows repeated 4 x
    weight times do (with C / 4: four times the rows, four times the data term)."""
    frame = comparisons_frame(load_comparisons("@mt-bench"))
    rows = soft_labels(frame)
    quarters = np.round(rows.weight.to_numpy() * 4)
    assert 0 < (quarters % 4 != 0).mean() < 0.5  # many items are not certain
    repeated = rows.loc[rows.index.repeat(quarters.astype(int))]
    weighted = LengthModel(C=1.0).fit(rows, rows.label, sample_weight=quarters / 4)
    duplicated = LengthModel(C=0.25).fit(repeated, repeated.label)
    np.testing.assert_allclose(
        weighted.predict_proba(frame), duplicated.predict_proba(frame), atol=1e-5
    )
    hard = item_labels(frame, "dawid-skene")
    assert np.abs(weighted.predict_proba(frame) - LengthModel().fit(hard, hard.label)
                  .predict_proba(frame)).max() > 1e-3  # fmt: skip


def test_reliability_weights_give_the_contrarian_and_the_random_voter_nothing():
    frame, _ = simulate_votes(CROWD, n_items=300, seed=2)
    weights = reliability_weights(dawid_skene(frame, n_bootstrap=0))
    assert weights["annotator8"] == 0.0  # the contrarian
    assert weights["annotator9"] < 0.1  # the random voter
    good = weights[[f"annotator{j}" for j in range(8)]]
    assert (good > 0.6).all() and (good <= 1).all()
