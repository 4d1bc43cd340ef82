"""Request and response bodies of the API (pydantic models, shown in the OpenAPI docs).

Every text field of a request is a :data:`Text`: a string that
:func:`crowdtune.validation.text_problem` accepts (no NUL, no lone surrogate), so a bad character
is a 422 naming the field before anything is stored. Every text field of an item served to an
annotator is a :data:`ServedText`, which replaces what UTF-8 cannot encode (text stored before
these checks existed) instead of failing to answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from crowdtune.records import unpaired_turns
from crowdtune.validation import encodable_text, text_problem


def _checked_text(value: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise ValueError(f"the text {problem}")
    return value


#: A string from a request: 422 for a NUL or a lone surrogate
#: (:func:`crowdtune.validation.text_problem`).
Text = Annotated[str, AfterValidator(_checked_text)]
#: A string served to an annotator: characters UTF-8 cannot encode become U+FFFD.
ServedText = Annotated[str, AfterValidator(encodable_text)]
Turns = Annotated[
    Annotated[Text, Tag("text")] | Annotated[list[Text], Field(min_length=1), Tag("turns")],
    # Tagged, so that an error names the field and one of the two forms, not both.
    Discriminator(lambda value: "turns" if isinstance(value, list) else "text"),
    Field(description="One text, or a list of turns."),
]
VerdictCode = Literal["a", "b", "tie"]
#: Largest row id the store can hold: its ``Integer`` columns are 32-bit on PostgreSQL (and
#: SQLite refuses integers past 64 bits), so a larger id in a URL must be refused before it
#: reaches a query, where it would be a database error (500) instead of a 404 or 422.
MAX_ROW_ID = 2**31 - 1
#: A row id in a URL path (``project_id``, ``task_id``): 422 when out of range.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Label = Annotated[Text, Field(min_length=1, max_length=200)]


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    kind: Literal["pairwise"] = "pairwise"
    overlap: Annotated[int, Field(ge=1, le=1000, description="Distinct people per item.")] = 1


class Created(BaseModel):
    id: int


class ItemIn(BaseModel):
    """One prompt and two responses to compare: a conversation, with one turn of each response
    per prompt turn (a single text is one turn)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Turns
    response_a: Turns
    response_b: Turns
    model_a: Label | None = None
    model_b: Label | None = None
    gold: VerdictCode | None = Field(None, description="The known answer, for quality checks.")
    id: Label | None = Field(None, description="The item's id in its source, unique per project.")

    @field_validator("response_a", "response_b")
    @classmethod
    def _one_turn_per_prompt_turn(cls, value: str | list[str], info: ValidationInfo) -> Any:
        prompt = info.data.get("prompt")  # absent when the prompt itself was refused
        if prompt is not None:
            problem = unpaired_turns(_turn_list(prompt), _turn_list(value))
            if problem is not None:
                raise ValueError(f"{info.field_name} {problem}")
        return value


def _turn_list(turns: str | list[str]) -> list[str]:
    return [turns] if isinstance(turns, str) else turns


class ItemsCreated(BaseModel):
    created: int


class TaskItem(BaseModel):
    """What an annotator sees: turns joined for display; never gold answers or others' votes."""

    prompt: ServedText
    response_a: ServedText
    response_b: ServedText


class TaskOut(BaseModel):
    task_id: int
    item: TaskItem


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: VerdictCode
    reason: Annotated[Text, Field(max_length=10_000)] | None = None
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class ResponseOut(BaseModel):
    """The stored answer: one of ``verdict`` (pairwise), ``revision``, ``score`` (rating, with
    ``aspects``), or ``skipped``; the others are null (false)."""

    response_id: int
    task_id: int
    verdict: VerdictCode | None = None
    revision: str | None = None
    score: float | None = None
    aspects: dict[str, float] | None = None
    skipped: bool = False


class StatsOut(BaseModel):
    progress: dict[str, int]
    agreement: dict[str, Any] | None
    agreement_reason: str | None = None


class MajorityAgreement(BaseModel):
    share: float | None = Field(description="Share of scored items agreeing with the others.")
    n: int | None = Field(
        description="Shared items where the other voters had a clear majority (null: hidden, "
        "see quality_note)."
    )


class LeaderboardRow(BaseModel):
    """Null gold and agreement figures are hidden from annotators until they are safe to show
    (:mod:`crowdtune.server.scoring`; ``quality_note`` says when)."""

    contributor: str
    votes: int
    gold_answered: int | None
    gold_correct: int | None
    gold_accuracy: float | None
    majority_agreement: MajorityAgreement
    credit: float | None = Field(
        None, description="Points summed over the project's Crowd-SFT rounds; null before any."
    )


class LeaderboardOut(BaseModel):
    project_id: int
    contributors: list[LeaderboardRow]
    credit_note: str
    quality_note: str = Field(
        description="Which votes the gold and agreement figures count: every vote for admins; "
        "for annotators closed items only, shown once a contributor has a handful."
    )


# Crowd-SFT rounds. The choices repeat crowdtune.crowd's constants (STRATEGIES, ROUND_SCHEMES,
# ROUND_MODELS; a test keeps them equal) so that the app starts without loading the crowd and
# preference packages, and the OpenAPI docs list them.
RoundStrategy = Literal["random", "epsilon-greedy", "interleaved"]
RoundScheme = Literal["rank", "marginal", "leave-one-out", "shapley"]
RoundModel = Literal["length", "difference-bucket", "features-gbdt"]


class RoundIn(BaseModel):
    """Settings of one Crowd-SFT round (:class:`crowdtune.crowd.feedback.round.RoundSettings`)."""

    model_config = ConfigDict(extra="forbid")

    strategy: RoundStrategy = Field("random", description="How contributors are grouped.")
    scheme: RoundScheme = Field("rank", description="How contributors earn points.")
    n_groups: Annotated[int, Field(ge=1, le=100, description="Groups (G) competing.")] = 4
    model: RoundModel = Field("length", description="The preference model each group trains.")
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = Field(
        None, description="Seed of every random draw; null draws one (the round records it)."
    )


class CandidateOut(BaseModel):
    group: int
    members: list[str]
    n_votes: int = Field(description="The members' votes outside the gold items.")
    log_loss: float | None = Field(description="Mean log loss on the gold items (lower wins).")
    accuracy: float | None = Field(description="Share of gold items predicted right.")
    rank: int | None = Field(description="0 = the winner; null without a candidate.")
    reason: str | None = Field(description="Why the group has no candidate.")


class RoundContributor(BaseModel):
    contributor: str
    group: int
    votes: int = Field(description="Votes outside the gold items (the training votes).")
    points: float = Field(description="Points earned this round.")


class RoundOut(BaseModel):
    id: int
    project_id: int
    created_at: datetime
    round_number: int = Field(description="1 for the project's first round.")
    strategy: str
    scheme: str
    model: str
    n_groups: int
    seed: int = Field(description="The seed used; pass it again to repeat the round.")
    winner: int = Field(description="The group of the best candidate.")
    improved: bool = Field(description="Whether the winner beat the base (and replaced it).")
    base_log_loss: float = Field(description="Gold log loss of the model the round started from.")
    base_source: str
    model_after: dict[str, Any] = Field(description="The current model after this round.")
    n_gold: int
    n_votes: int
    n_training_votes: int
    n_gold_votes_excluded: int = Field(description="Votes on gold items, never trained on.")
    skipped: list[str] = Field(description="Voters with votes on gold items only.")
    candidates: list[CandidateOut]
    contributors: list[RoundContributor]
    extra_fits: int = Field(description="Models trained for the point scheme.")
    credit_methods: dict[str, str]
    settings: dict[str, Any]
    evaluation: str = Field(description="Fingerprint of the gold items and the scoring.")
