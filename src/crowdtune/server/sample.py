"""A sample campaign on an empty database: an admin, three annotators and one pairwise project.

``crowdtune serve --sample SRC`` (and ``make serve``) calls :func:`create_sample_campaign`, so a
newcomer can sign in and annotate at once; the tokens it returns are shown once and never stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crowdtune.store import repository as repo

#: Who a sample campaign signs up: (name, role).
SAMPLE_PEOPLE = (("admin", "admin"),) + tuple((f"annotator-{i}", "annotator") for i in (1, 2, 3))
SAMPLE_OVERLAP = 3


@dataclass(frozen=True)
class SampleCampaign:
    """What :func:`create_sample_campaign` made: the project and each person's bearer token."""

    project_id: int
    n_items: int
    n_gold: int
    tokens: list[tuple[str, str, str]]  # (name, role, token)


def create_sample_campaign(
    session: Session, name: str, items: Sequence[Mapping[str, Any]]
) -> SampleCampaign | None:
    """Sign up :data:`SAMPLE_PEOPLE` and create the project ``name`` with ``items`` (overlap
    :data:`SAMPLE_OVERLAP`); ``None``, storing nothing, when the database has projects already."""
    if repo.list_projects(session):
        return None
    tokens = [
        (person, role, repo.create_contributor(session, person, role)[1])
        for person, role in SAMPLE_PEOPLE
    ]
    project = repo.create_project(session, name, overlap=SAMPLE_OVERLAP)
    repo.add_items(session, project.id, list(items))
    n_gold = sum(item.get("gold") is not None for item in items)
    return SampleCampaign(project.id, len(items), n_gold, tokens)
