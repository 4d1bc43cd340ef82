"""A transparent per-contributor breakdown of a project's votes (the leaderboard), and what of
it annotators may see.

An annotator who compares the leaderboard before and after each vote must learn nothing about
the item they just answered: not whether it is gold, not whether they were right, not what the
others voted. So annotators see quality figures computed over **closed** items only (all k votes
in: nobody can vote on them any more) and only once a contributor has
:data:`MIN_CLOSED_ITEMS` of them; admins see figures over every vote.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from crowdtune.store.repository import Vote

#: Fewest closed items a contributor's gold and agreement figures are shown over to annotators.
MIN_CLOSED_ITEMS = 5


def quality_note(overlap: int | None) -> str:
    """What the leaderboard's gold and agreement figures count: every vote (``overlap`` None,
    the admins' view), or closed items only (the annotators' view, items with ``overlap``
    votes)."""
    if overlap is None:
        return "Gold and agreement figures count every vote, open items included (admin view)."
    return (
        f"Gold and agreement figures count only closed items (all {overlap} votes in), and show "
        f"once a contributor has {MIN_CLOSED_ITEMS} of them; until then they are blank. So a "
        "vote never tells anyone whether its item is gold or what the others voted on it."
    )


def contributor_breakdown(
    votes: Sequence[Vote],
    credit: Mapping[str, float | None] | None = None,
    *,
    overlap: int | None = None,
) -> list[dict[str, Any]]:
    """Per contributor: votes, gold items answered and correct, gold accuracy, agreement
    with the majority of the *other* voters on shared items, and credit: the contributor's
    points in ``credit`` (from :func:`crowdtune.server.rounds.project_credit`), else None.

    An item counts for majority agreement when at least one other person voted on it and the
    others' most common verdict is unique (a tied majority says nothing, as in
    :func:`crowdtune.preference.agreement.agreement`). Rows are sorted by votes, then name.

    With ``overlap`` (the project's k; what annotators see), gold and agreement count only
    items with ``overlap`` votes, and a row's gold and agreement figures are None while its
    contributor has fewer than :data:`MIN_CLOSED_ITEMS` such items. Without it (admins) every
    vote counts.

    >>> from crowdtune.records import Verdict
    >>> votes = [Vote(i, i, 1, "ann", Verdict.A, Verdict.A) for i in range(6)]
    >>> contributor_breakdown(votes)[0]["gold_correct"]
    6
    >>> contributor_breakdown(votes, overlap=2)[0]["gold_correct"] is None  # no item closed
    True
    """
    by_item: dict[int, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_item[vote.item_id].append(vote)
    rows: dict[int, dict[str, Any]] = {}
    for vote in votes:
        row = rows.setdefault(
            vote.contributor_id,
            {"contributor": vote.contributor, "votes": 0, "scored": 0, "gold_answered": 0,
             "gold_correct": 0, "agree": 0, "n": 0},
        )  # fmt: skip
        row["votes"] += 1
        if overlap is not None and len(by_item[vote.item_id]) < overlap:
            continue  # an open item: its gold answer and the others' votes stay hidden
        row["scored"] += 1
        if vote.gold is not None:
            row["gold_answered"] += 1
            row["gold_correct"] += vote.verdict is vote.gold
        others = Counter(
            v.verdict for v in by_item[vote.item_id] if v.contributor_id != vote.contributor_id
        ).most_common(2)
        if others and (len(others) == 1 or others[0][1] > others[1][1]):
            row["n"] += 1
            row["agree"] += vote.verdict is others[0][0]
    return sorted(
        (_row(row, credit, hidden=overlap is not None and row["scored"] < MIN_CLOSED_ITEMS)
         for row in rows.values()),
        key=lambda r: (-r["votes"], r["contributor"]),
    )  # fmt: skip


def _row(
    row: dict[str, Any], credit: Mapping[str, float | None] | None, hidden: bool
) -> dict[str, Any]:
    answered, n = row["gold_answered"], row["n"]
    return {
        "contributor": row["contributor"],
        "votes": row["votes"],
        "gold_answered": None if hidden else answered,
        "gold_correct": None if hidden else row["gold_correct"],
        "gold_accuracy": row["gold_correct"] / answered if answered and not hidden else None,
        "majority_agreement": {
            "share": row["agree"] / n if n and not hidden else None,
            "n": None if hidden else n,
        },
        "credit": None if credit is None else credit.get(row["contributor"]),
    }
