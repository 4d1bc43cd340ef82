"""Request and response bodies of the API (pydantic models, shown in the OpenAPI docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Turns = Annotated[
    str | Annotated[list[str], Field(min_length=1)],
    Field(description="One text, or a list of turns."),
]
VerdictCode = Literal["a", "b", "tie"]
Label = Annotated[str, Field(min_length=1, max_length=200)]


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["pairwise"] = "pairwise"
    overlap: Annotated[int, Field(ge=1, le=1000, description="Distinct people per item.")] = 1


class Created(BaseModel):
    id: int


class ItemIn(BaseModel):
    """One prompt and two responses to compare."""

    model_config = ConfigDict(extra="forbid")

    prompt: Turns
    response_a: Turns
    response_b: Turns
    model_a: Label | None = None
    model_b: Label | None = None
    gold: VerdictCode | None = Field(None, description="The known answer, for quality checks.")
    id: Label | None = Field(None, description="The item's id in its source, unique per project.")


class ItemsCreated(BaseModel):
    created: int


class TaskItem(BaseModel):
    """What an annotator sees: turns joined for display; never gold answers or others' votes."""

    prompt: str
    response_a: str
    response_b: str


class TaskOut(BaseModel):
    task_id: int
    item: TaskItem


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: VerdictCode
    reason: Annotated[str, Field(max_length=10_000)] | None = None
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class ResponseOut(BaseModel):
    response_id: int
    task_id: int
    verdict: VerdictCode


class StatsOut(BaseModel):
    progress: dict[str, int]
    agreement: dict[str, Any] | None
    agreement_reason: str | None = None


class MajorityAgreement(BaseModel):
    share: float | None = Field(description="Share of scored items agreeing with the others.")
    n: int = Field(description="Shared items where the other voters had a clear majority.")


class LeaderboardRow(BaseModel):
    contributor: str
    votes: int
    gold_answered: int
    gold_correct: int
    gold_accuracy: float | None
    majority_agreement: MajorityAgreement
    credit: float | None = Field(
        None, description="Shapley points; filled in by Crowd-SFT rounds (not yet)."
    )


class LeaderboardOut(BaseModel):
    project_id: int
    contributors: list[LeaderboardRow]
    credit_note: str
