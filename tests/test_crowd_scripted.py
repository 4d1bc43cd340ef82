"""Tests for crowdtune.crowd.scripted: the decisions of scripted contributors."""

from __future__ import annotations

import numpy as np
import pytest

from crowdtune.crowd.scripted import (
    BEHAVIOUR_QUALITY,
    BEHAVIOURS,
    OFF_TOPIC_TEXTS,
    REVISION_BEHAVIOURS,
    VOTE_BEHAVIOURS,
    behaviour_kind,
    proxy_truth,
    revise,
    split_sentences,
    vote,
)

PROMPT = "Explain why the sky is blue."
ANSWER = "Sunlight scatters off air molecules. Blue light scatters most. So the sky looks blue."
REFERENCE = "Air molecules scatter short (blue) wavelengths of sunlight more than long ones."


def test_quality_covers_every_behaviour_in_the_documented_order() -> None:
    assert set(BEHAVIOUR_QUALITY) == set(BEHAVIOURS)
    revision = [BEHAVIOUR_QUALITY[b] for b in ("expert", "lazy", "noisy", "adversarial")]
    votes = [BEHAVIOUR_QUALITY[b] for b in ("oracle", "random", "contrarian")]
    assert revision == sorted(revision, reverse=True) and len(set(revision)) == 4
    assert votes == sorted(votes, reverse=True) and len(set(votes)) == 3


def test_behaviour_kind() -> None:
    assert {behaviour_kind(b) for b in REVISION_BEHAVIOURS} == {"revision"}
    assert {behaviour_kind(b) for b in VOTE_BEHAVIOURS} == {"vote"}
    with pytest.raises(ValueError, match="unknown behaviour 'sloppy'"):
        behaviour_kind("sloppy")


def test_expert_submits_the_reference_else_a_cleanup() -> None:
    rng = np.random.default_rng(0)
    assert revise("expert", PROMPT, ANSWER, REFERENCE, rng) == REFERENCE
    assert revise("expert", PROMPT, "  the  sky is blue", None, rng) == "The sky is blue."
    assert revise("expert", PROMPT, "Done!", "   ", rng) == "Done!"


def test_lazy_returns_the_answer_unchanged() -> None:
    assert revise("lazy", PROMPT, ANSWER, REFERENCE, np.random.default_rng(0)) == ANSWER


def test_noisy_truncates_or_shuffles_and_never_leaves_the_answer_as_is() -> None:
    sentences = split_sentences(ANSWER)
    seen = set()
    for seed in range(40):
        noisy = revise("noisy", PROMPT, ANSWER, REFERENCE, np.random.default_rng(seed))
        assert noisy != ANSWER
        parts = split_sentences(noisy)
        if len(parts) == len(sentences):
            assert sorted(parts) == sorted(sentences)
            seen.add("shuffled")
        else:
            assert parts == sentences[: len(parts)]
            seen.add("truncated")
    assert seen == {"shuffled", "truncated"}
    one = revise("noisy", PROMPT, "one sentence of six words", None, np.random.default_rng(1))
    assert one != "one sentence of six words" and "one sentence of six words".startswith(one)
    assert revise("noisy", PROMPT, "word", None, np.random.default_rng(1)) == "word"


def test_adversary_draws_unrelated_text_deterministically() -> None:
    pool = [ANSWER, "Paris is the capital of France.", "Water boils at 100 degrees Celsius."]
    drawn = {
        revise("adversarial", PROMPT, ANSWER, REFERENCE, np.random.default_rng(s), pool=pool)
        for s in range(20)
    }
    assert drawn == set(pool[1:])
    again = [
        revise("adversarial", PROMPT, ANSWER, None, np.random.default_rng(3)) for _ in range(2)
    ]
    assert again[0] == again[1] and again[0] in OFF_TOPIC_TEXTS
    assert revise("adversarial", PROMPT, ANSWER, None, np.random.default_rng(3), pool=[ANSWER]) in (
        OFF_TOPIC_TEXTS
    )


def test_votes_follow_or_oppose_the_truth() -> None:
    rng = np.random.default_rng(0)
    for truth in ("a", "b", "tie"):
        assert vote("oracle", truth, rng) == truth
    assert vote("contrarian", "a", rng) == "b" and vote("contrarian", "b", rng) == "a"
    assert {vote("contrarian", "tie", np.random.default_rng(s)) for s in range(20)} == {"a", "b"}
    for behaviour in ("oracle", "contrarian"):
        with pytest.raises(ValueError, match="needs the item's truth"):
            vote(behaviour, None, rng)
    with pytest.raises(ValueError, match="unknown verdict"):
        vote("oracle", "A", rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown vote behaviour 'expert'"):
        vote("expert", "a", rng)


def test_random_votes_are_uniform_and_tie_only_when_asked() -> None:
    rng = np.random.default_rng(7)
    votes = [vote("random", None, rng) for _ in range(2000)]
    assert set(votes) == {"a", "b"}
    assert abs(votes.count("a") / 2000 - 0.5) < 0.05
    with_ties = [vote("random", "a", rng, tie_probability=0.3) for _ in range(2000)]
    assert abs(with_ties.count("tie") / 2000 - 0.3) < 0.05
    with pytest.raises(ValueError, match="tie_probability"):
        vote("random", None, rng, tie_probability=1.5)


def test_proxy_truth_prefers_the_longer_answer() -> None:
    assert proxy_truth("a longer answer", "short") == "a"
    assert proxy_truth("short", "a longer answer") == "b"
    assert proxy_truth(" same ", "same") == "tie"
