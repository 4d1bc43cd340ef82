"""A transparent per-contributor breakdown of a project's votes (the leaderboard)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from crowdtune.store.repository import Vote


def contributor_breakdown(
    votes: Sequence[Vote], credit: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Per contributor: votes, gold items answered and correct, gold accuracy, agreement
    with the majority of the *other* voters on shared items, and credit: the contributor's
    points in ``credit`` (from :func:`crowdtune.server.rounds.project_credit`), else None.

    An item counts for majority agreement when at least one other person voted on it and the
    others' most common verdict is unique (a tied majority says nothing, as in
    :func:`crowdtune.preference.agreement.agreement`). Rows are sorted by votes, then name.
    """
    by_item: dict[int, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_item[vote.item_id].append(vote)
    rows: dict[int, dict[str, Any]] = {}
    for vote in votes:
        row = rows.setdefault(
            vote.contributor_id,
            {"contributor": vote.contributor, "votes": 0, "gold_answered": 0, "gold_correct": 0,
             "agree": 0, "n": 0},
        )  # fmt: skip
        row["votes"] += 1
        if vote.gold is not None:
            row["gold_answered"] += 1
            row["gold_correct"] += vote.verdict is vote.gold
        others = Counter(
            v.verdict for v in by_item[vote.item_id] if v.contributor_id != vote.contributor_id
        ).most_common(2)
        if others and (len(others) == 1 or others[0][1] > others[1][1]):
            row["n"] += 1
            row["agree"] += vote.verdict is others[0][0]
    out = []
    for row in rows.values():
        answered, n = row["gold_answered"], row["n"]
        out.append(
            {
                "contributor": row["contributor"],
                "votes": row["votes"],
                "gold_answered": answered,
                "gold_correct": row["gold_correct"],
                "gold_accuracy": row["gold_correct"] / answered if answered else None,
                "majority_agreement": {"share": row["agree"] / n if n else None, "n": n},
                "credit": None if credit is None else credit.get(row["contributor"]),
            }
        )
    return sorted(out, key=lambda r: (-r["votes"], r["contributor"]))
