"""A sample campaign on an empty database: an admin, three annotators and a project of each kind.

``crowdtune serve --sample SRC`` (and ``make serve``) calls :func:`create_sample_campaign`, so a
newcomer can sign in and annotate at once: a pairwise project of comparisons from ``SRC``, a
revision project of CaR's original Alpaca answers (:func:`sample_revision_items`) and a rating
project (:func:`sample_rating_items`). The tokens it returns are shown once and never stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crowdtune.datasets.car import load_car_revisions
from crowdtune.datasets.home import DatasetMissingError
from crowdtune.datasets.items import revision_items
from crowdtune.store import repository as repo

#: Who a sample campaign signs up: (name, role).
SAMPLE_PEOPLE = (("admin", "admin"),) + tuple((f"annotator-{i}", "annotator") for i in (1, 2, 3))
SAMPLE_OVERLAP = 3
#: Items of the sample revision and rating projects.
SAMPLE_SINGLE_ITEMS = 30
#: Every how many items one keeps its gold answer (a reference revision, a score range).
SAMPLE_GOLD_EVERY = 3
#: The gold range of an expert's revision in the sample rating project (scale 1 to 7): an answer
#: an expert rewrote to be good should not score below the middle.
EXPERT_GOLD = (4, 7)


@dataclass(frozen=True)
class SampleProject:
    """One project of a sample campaign."""

    id: int
    name: str
    kind: str
    n_items: int
    n_gold: int


@dataclass(frozen=True)
class SampleCampaign:
    """What :func:`create_sample_campaign` made: the pairwise project (``project_id``, its
    items and gold items), every project (``projects``, the pairwise one first) and each
    person's bearer token."""

    project_id: int
    n_items: int
    n_gold: int
    tokens: list[tuple[str, str, str]]  # (name, role, token)
    projects: tuple[SampleProject, ...] = ()


def sample_revision_items(n: int = SAMPLE_SINGLE_ITEMS) -> list[dict[str, Any]] | None:
    """The first ``n`` items of CaR's test split for a revision project: the original Alpaca
    answers to revise, every :data:`SAMPLE_GOLD_EVERY`-th with the expert's revision as its
    reference (gold). None when the data home lacks CaR."""
    try:
        revisions = load_car_revisions("test")[:n]
    except DatasetMissingError:
        return None
    items = revision_items(revisions)
    for i, item in enumerate(items):
        if i % SAMPLE_GOLD_EVERY:
            del item["reference"]
    return items


def sample_rating_items(
    pairwise: Sequence[Mapping[str, Any]], n: int = SAMPLE_SINGLE_ITEMS
) -> list[dict[str, Any]]:
    """``n`` answers to score on 1 to 7. With CaR in the data home: original Alpaca answers and
    their expert revisions, alternately (ids ``car-test-<i>/original`` and ``.../expert``),
    every :data:`SAMPLE_GOLD_EVERY`-th expert revision with the gold range
    :data:`EXPERT_GOLD`. Without: the first answers of the single-turn ``pairwise`` items
    (their verdicts say which answer is better, not how good it is, so no gold)."""
    try:
        revisions = load_car_revisions("test")[: (n + 1) // 2]
    except DatasetMissingError:
        singles = [item for item in pairwise if len(item["prompt"]) == 1][:n]
        return [
            {"prompt": item["prompt"][0], "response": item["response_a"][0],
             **({"id": item["external_id"]} if item.get("external_id") else {})}
            for item in singles
        ]  # fmt: skip
    items: list[dict[str, Any]] = []
    for i, r in enumerate(revisions):
        items.append({"id": f"{r.id}/original", "prompt": r.prompt[0], "response": r.original})
        expert: dict[str, Any] = {
            "id": f"{r.id}/expert",
            "prompt": r.prompt[0],
            "response": r.revised,
        }
        if i % SAMPLE_GOLD_EVERY == 0:
            expert["gold"] = list(EXPERT_GOLD)
        items.append(expert)
    return items[:n]


def _n_gold(items: Sequence[Mapping[str, Any]]) -> int:
    return sum(item.get(key) is not None for item in items for key in ("gold", "reference"))


def create_sample_campaign(
    session: Session,
    name: str,
    items: Sequence[Mapping[str, Any]],
    *,
    revisions: Sequence[Mapping[str, Any]] | None = None,
    ratings: Sequence[Mapping[str, Any]] | None = None,
) -> SampleCampaign | None:
    """Sign up :data:`SAMPLE_PEOPLE` and create the pairwise project ``name`` with ``items``,
    a revision project ``"{name} revisions"`` with ``revisions`` and a rating project
    ``"{name} ratings"`` (scale 1 to 7) with ``ratings`` (each left out when None), all with
    overlap :data:`SAMPLE_OVERLAP`; ``None``, storing nothing, when the database has projects
    already."""
    if repo.list_projects(session):
        return None
    tokens = [
        (person, role, repo.create_contributor(session, person, role)[1])
        for person, role in SAMPLE_PEOPLE
    ]
    made = []
    for kind, title, rows in (
        ("pairwise", name, items),
        ("revision", f"{name} revisions", revisions),
        ("rating", f"{name} ratings", ratings),
    ):
        if rows is None:
            continue
        project = repo.create_project(session, title, overlap=SAMPLE_OVERLAP, kind=kind)
        repo.add_items(session, project.id, list(rows))
        made.append(SampleProject(project.id, title, kind, len(rows), _n_gold(rows)))
    pairwise = made[0]
    return SampleCampaign(pairwise.id, pairwise.n_items, pairwise.n_gold, tokens, tuple(made))
