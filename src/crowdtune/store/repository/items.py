"""Repository items: what a project's contributors judge, imported all or none.

A pairwise item is one prompt and two responses (:func:`comparison_item` makes one of a
:class:`~crowdtune.records.Comparison`); a revision or rating item one prompt and one response
(:func:`revision_item` makes one of a :class:`~crowdtune.records.Revision`), with its gold
answer where known. :func:`add_items` checks every item before it takes the write lock, and
commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crowdtune.records import Comparison, Revision, Verdict, check_score
from crowdtune.store.errors import ConflictError
from crowdtune.store.models import SINGLE_RESPONSE_KINDS, Item, Project, utc_now
from crowdtune.store.repository.reads import get_project
from crowdtune.store.repository.writes import (
    MAX_LABEL,
    check_name,
    commit_or_conflict,
    writing,
)
from crowdtune.validation import check_text

#: Fields an item dict of a pairwise project may have (``id`` is read as ``external_id``).
ITEM_FIELDS = ("prompt", "response_a", "response_b", "model_a", "model_b", "gold", "external_id")
#: Fields an item dict of a revision or rating project may have: ``reference`` (a known good
#: revision) only in a revision project, ``gold`` (a score or ``[low, high]``) only in a rating one;
#: ``model_a`` names the model that wrote the response (``crowdtune items generate``).
SINGLE_ITEM_FIELDS = {
    "revision": ("prompt", "response", "reference", "external_id", "model_a"),
    "rating": ("prompt", "response", "gold", "external_id", "model_a"),
}
#: External ids checked against the stored ones per query by :func:`add_items`.
ID_CHECK_SLICE = 10_000


def _turns(value: object, where: str) -> list[str]:
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list | tuple) or not all(isinstance(t, str) for t in turns):
        raise ValueError(f"{where}: expected a string or a list of strings, got {value!r:.80}")
    if not turns:
        raise ValueError(f"{where}: needs at least one turn")
    return [check_text(turn, where) for turn in turns]


def _optional_label(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"{where}: expected a string, got {value!r:.80}")
    return check_name(str(value), where, MAX_LABEL)


def comparison_item(comparison: Comparison, gold: bool = False) -> dict[str, Any]:
    """The item fields of a comparison (its id as the external id); its verdict becomes the
    gold answer when ``gold``."""
    return {
        "prompt": list(comparison.prompt),
        "response_a": list(comparison.response_a),
        "response_b": list(comparison.response_b),
        "model_a": comparison.model_a,
        "model_b": comparison.model_b,
        "gold": comparison.verdict if gold else None,
        "external_id": comparison.id,
    }


def comparison_items(
    comparisons: list[Comparison], *, gold_share: float = 0.0, seed: int = 0
) -> list[dict[str, Any]]:
    """The item fields of ``comparisons`` (:func:`comparison_item`); a random ``gold_share`` of
    them, drawn from ``seed``, keep their verdict as the gold answer."""
    gold = gold_rows(len(comparisons), gold_share, seed=seed)
    return [comparison_item(c, i in gold) for i, c in enumerate(comparisons)]


def gold_rows(n: int, gold_share: float, *, seed: int = 0) -> set[int]:
    """A random ``gold_share`` of the row indices ``0 .. n-1`` (rounded), drawn from ``seed``:
    the items that keep their known answer as gold. ``ValueError`` unless ``0 <= gold_share <=
    1``."""
    if not 0 <= gold_share <= 1:
        raise ValueError(f"gold_share must be between 0 and 1, got {gold_share}")
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.choice(n, size=round(gold_share * n), replace=False)}


def _item_values(entry: Mapping[str, Any] | Comparison, index: int, gold: bool) -> dict[str, Any]:
    if isinstance(entry, Comparison):
        item = comparison_item(entry, gold)
        item["external_id"] = _optional_label(entry.id, f"item {index}: id")
        return item
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"item {index}: expected a dict or a Comparison, got {type(entry).__name__}"
        )
    data = dict(entry)
    if "id" in data:
        if "external_id" in data:
            raise ValueError(f"item {index}: give either id or external_id, not both")
        data["external_id"] = data.pop("id")
    if unknown := sorted(set(data) - set(ITEM_FIELDS)):
        raise ValueError(
            f"item {index}: unknown field(s) {unknown}; fields are {list(ITEM_FIELDS)}"
        )
    if missing := [key for key in ("prompt", "response_a", "response_b") if key not in data]:
        raise ValueError(f"item {index}: missing field(s) {missing}")
    values: dict[str, Any] = {
        key: _turns(data[key], f"item {index}: {key}")
        for key in ("prompt", "response_a", "response_b")
    }
    for key in ("model_a", "model_b", "external_id"):
        values[key] = _optional_label(data.get(key), f"item {index}: {key}")
    try:
        values["gold"] = None if data.get("gold") is None else Verdict.parse(data["gold"])
    except ValueError as exc:
        raise ValueError(f"item {index}: gold: {exc}") from None
    return values


def revision_item(revision: Revision) -> dict[str, Any]:
    """The item fields of a revision record for a revision project: its original answer is the
    item's response, its revised answer the reference (its id the external id)."""
    return {
        "prompt": list(revision.prompt),
        "response": revision.original,
        "reference": revision.revised,
        "external_id": revision.id,
    }


def _gold_range(value: object, scale: tuple[int, int], where: str) -> tuple[float, float]:
    """A rating item's accepted scores: a score, or ``[low, high]``, within the scale."""
    pair = value if isinstance(value, list | tuple) else [value, value]
    if len(pair) != 2:
        raise ValueError(f"{where}: expected a score or [low, high], got {value!r:.80}")
    low, high = (check_score(v, (float(scale[0]), float(scale[1])), where) for v in pair)
    if low > high:
        raise ValueError(f"{where}: [low, high] must have low <= high, got {value!r:.80}")
    return low, high


def _single_item_values(
    entry: Mapping[str, Any] | Revision, index: int, project: Project
) -> dict[str, Any]:
    """The stored fields of one item of a revision or rating project."""
    kind = project.kind
    if isinstance(entry, Revision):
        if kind != "revision":
            raise ValueError(f"item {index}: a Revision goes to a revision project, not {kind}")
        entry = revision_item(entry)
    if not isinstance(entry, Mapping):
        raise ValueError(f"item {index}: expected a dict, got {type(entry).__name__}")
    data = dict(entry)
    if "id" in data:
        if "external_id" in data:
            raise ValueError(f"item {index}: give either id or external_id, not both")
        data["external_id"] = data.pop("id")
    fields = SINGLE_ITEM_FIELDS[kind]
    if unknown := sorted(set(data) - set(fields)):
        raise ValueError(
            f"item {index}: unknown field(s) {unknown} for a {kind} project; fields are "
            f"{['id' if f == 'external_id' else f for f in fields]}"
        )
    if missing := [key for key in ("prompt", "response") if key not in data]:
        raise ValueError(f"item {index}: missing field(s) {missing}")
    values: dict[str, Any] = {
        "prompt": _turns(data["prompt"], f"item {index}: prompt"),
        "response_a": _turns(data["response"], f"item {index}: response"),
        "response_b": None,
        "model_a": _optional_label(data.get("model_a"), f"item {index}: model_a"),
        "model_b": None,
        "gold": None,
        "external_id": _optional_label(data.get("external_id"), f"item {index}: id"),
        "reference": None,
        "gold_low": None,
        "gold_high": None,
    }
    if len(values["response_a"]) != 1:
        raise ValueError(f"item {index}: response: a {kind} item has one response text")
    reference = data.get("reference")
    if reference is not None:
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError(f"item {index}: reference must be a non-empty string")
        values["reference"] = check_text(reference, f"item {index}: reference")
    if data.get("gold") is not None:
        assert project.scale is not None
        low, high = _gold_range(data["gold"], project.scale, f"item {index}: gold")
        values.update(gold_low=low, gold_high=high)
    return values


def add_items(
    session: Session,
    project_id: int,
    items: Iterable[Mapping[str, Any] | Comparison],
    *,
    verdict_as_gold: bool = False,
) -> int:
    """Add items to a project, all or none. Commits.

    Parameters
    ----------
    items
        Pairwise projects: dicts with ``prompt``, ``response_a`` and ``response_b`` (a string or
        a list of turns) and optionally ``model_a``, ``model_b``, ``gold`` (``'a'``, ``'b'``,
        ``'tie'``) and ``external_id`` (or ``id``); or :class:`~crowdtune.records.Comparison`
        records, whose id becomes the external id. Revision projects: dicts with ``prompt``,
        ``response`` (one text) and optionally ``reference`` (a known good revision) and
        ``id``; or :class:`~crowdtune.records.Revision` records (:func:`revision_item`).
        Rating projects: ``prompt``, ``response`` and optionally ``gold`` (the accepted score,
        or ``[low, high]``, on the project's scale) and ``id``.
    verdict_as_gold
        Store each Comparison's verdict as the item's gold answer (otherwise it is dropped).

    Returns
    -------
    int
        How many items were added. (Not the items: for an import of many thousand rows,
        making the objects and reading back their ids would take longer than storing them.)

    Raises
    ------
    NotFoundError
        No such project.
    ValueError
        An item is malformed; the message names its 0-based index and the field.
    ConflictError
        An external id repeats, within ``items`` or in the project already.
    """
    # Everything per row happens before the write lock is taken: on SQLite every other writer
    # (a vote, an assignment) waits while the rows go in, so that part is one bulk INSERT.
    now = utc_now()
    project = get_project(session, project_id)
    if project.kind in SINGLE_RESPONSE_KINDS:
        values = [
            _single_item_values(entry, i, project)  # type: ignore[arg-type]
            for i, entry in enumerate(items)
        ]
    else:
        values = [_item_values(entry, i, verdict_as_gold) for i, entry in enumerate(items)]
    rows = [{**v, "project_id": project_id, "assigned": 0, "created_at": now} for v in values]
    with writing(session):
        get_project(session, project_id)
        external = [row["external_id"] for row in rows if row["external_id"] is not None]
        seen: set[str] = set()
        for ident in external:
            if ident in seen:
                raise ConflictError(f"external id {ident!r} appears more than once in the items")
            seen.add(ident)
        # In slices, because a statement takes at most 65,535 parameters (PostgreSQL).
        for start in range(0, len(external), ID_CHECK_SLICE):
            taken = session.scalars(
                select(Item.external_id).where(
                    Item.project_id == project_id,
                    Item.external_id.in_(external[start : start + ID_CHECK_SLICE]),
                )
            ).first()
            if taken is not None:
                raise ConflictError(f"project {project_id} already has an item with id {taken!r}")
        conflict = f"an external id of these items is in project {project_id} already"
        try:
            if rows:
                session.execute(insert(Item), rows)
        except IntegrityError as exc:
            session.rollback()
            raise ConflictError(conflict) from exc
        commit_or_conflict(session, conflict)
    return len(rows)
