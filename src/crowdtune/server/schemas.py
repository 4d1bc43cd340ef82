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
    Strict,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from crowdtune.datasets.items import FieldError, gold_value
from crowdtune.records import unpaired_turns
from crowdtune.store.repository import MAX_ASPECTS, MAX_REVISION
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
ProjectKind = Literal["pairwise", "revision", "rating"]
#: A score or bound sent as a JSON number (``true`` is not 1).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
#: Largest magnitude of a scale's bounds (the store's limit).
MAX_SCALE = 1000


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("the text is blank; give the text")
    return value


#: A text that must hold more than white space (an answer, a revision, a reference).
FilledText = Annotated[Text, AfterValidator(_nonblank)]


class Scale(BaseModel):
    """A rating project's whole-number scores, ``min`` to ``max``."""

    model_config = ConfigDict(extra="forbid")

    min: Annotated[int, Strict(), Field(ge=-MAX_SCALE, le=MAX_SCALE)] = 1
    max: Annotated[int, Strict(), Field(ge=-MAX_SCALE, le=MAX_SCALE)] = 7

    @model_validator(mode="after")
    def _lowest_first(self) -> Scale:
        if self.min >= self.max:
            raise ValueError(f"min must be below max, got min {self.min} and max {self.max}")
        return self


class ProjectIn(BaseModel):
    """A new project: ``pairwise`` (compare two answers), ``revision`` (rewrite one) or
    ``rating`` (score one on ``scale``, by default 1 to 7)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    kind: ProjectKind = "pairwise"
    overlap: Annotated[int, Field(ge=1, le=1000, description="Distinct people per item.")] = 1
    scale: Scale | None = Field(
        None, description="Rating projects only: the scores, default {min: 1, max: 7}."
    )
    assignment: Literal["depth", "breadth"] = Field(
        "depth",
        description="depth: a contributor gets an item others have started, so items reach "
        "`overlap` answers steadily; breadth: the least assigned item first.",
    )
    editor_prefill: bool = Field(
        True, description="Revision projects only: the editor starts with the answer (or empty)."
    )
    base_model: Annotated[Text, Field(min_length=1, max_length=500)] = Field(
        "tiny",
        description="The model the first Crowd-SFT round of language models starts from: "
        "'tiny' (built from a config, for trials), 'smollm2' (SmolLM2-135M-Instruct), a folder "
        "on the worker's machine or a hub name.",
    )

    @field_validator("scale")
    @classmethod
    def _rating_only(cls, value: Scale | None, info: ValidationInfo) -> Scale | None:
        kind = info.data.get("kind")
        if value is not None and kind not in (None, "rating"):
            raise ValueError(f"only a rating project has a scale, not a {kind} project")
        return value

    @field_validator("editor_prefill")
    @classmethod
    def _revision_only(cls, value: bool, info: ValidationInfo) -> bool:
        # Runs only when the field is sent: the default suits every kind.
        kind = info.data.get("kind")
        if kind not in (None, "revision"):
            raise ValueError(
                f"editor_prefill is a setting of revision projects, not of a {kind} project"
            )
        return value


class Created(BaseModel):
    id: int


class ProjectOut(BaseModel):
    """A project as every signed-in contributor sees it in the list: enough to pick one."""

    id: int
    name: str
    kind: str = Field(description="pairwise, revision or rating.")


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


class RevisionItemIn(BaseModel):
    """One item of a revision project: a prompt (one text, or a list of user turns) and the
    answer contributors rewrite."""

    model_config = ConfigDict(extra="forbid")

    prompt: Turns
    response: FilledText = Field(description="The answer to revise.")
    reference: FilledText | None = Field(
        None, description="A known good revision (gold), for quality checks."
    )
    id: Label | None = Field(None, description="The item's id in its source, unique per project.")


GoldScore = Annotated[
    Annotated[Number, Tag("score")]
    | Annotated[list[Number], Field(min_length=2, max_length=2), Tag("range")],
    # Tagged, so that an error names one of the two forms, not both.
    Discriminator(lambda value: "range" if isinstance(value, list) else "score"),
]


class RatingItemIn(BaseModel):
    """One item of a rating project: a prompt and the answer contributors score. Validated
    with the context ``{"scale": (min, max)}``, a gold answer must lie on the project's scale."""

    model_config = ConfigDict(extra="forbid")

    prompt: Turns
    response: FilledText = Field(description="The answer to score.")
    gold: GoldScore | None = Field(
        None,
        description="The accepted score, or the accepted range [low, high], on the project's "
        "scale; for quality checks.",
    )
    id: Label | None = Field(None, description="The item's id in its source, unique per project.")

    @field_validator("gold")
    @classmethod
    def _on_the_scale(cls, value: Any, info: ValidationInfo) -> Any:
        scale = (info.context or {}).get("scale")
        if value is None or scale is None:
            return value
        try:
            return gold_value(value, (float(scale[0]), float(scale[1])))
        except FieldError as err:
            raise ValueError(err.problem) from None


#: The items a project of each kind takes.
ITEM_MODELS: dict[str, type[BaseModel]] = {
    "pairwise": ItemIn,
    "revision": RevisionItemIn,
    "rating": RatingItemIn,
}


class TaskItem(BaseModel):
    """What an annotator sees: turns joined for display; never gold answers or others' votes."""

    prompt: ServedText
    response_a: ServedText
    response_b: ServedText


class SingleTaskItem(BaseModel):
    """The item of a revision or rating task: the prompt's turns joined, and the answer; never
    its gold answer or others' answers."""

    prompt: ServedText
    response: ServedText


class TaskOut(BaseModel):
    """A pairwise task: compare ``response_a`` with ``response_b``."""

    task_id: int
    kind: Literal["pairwise"] = "pairwise"
    item: TaskItem


class RevisionTaskOut(BaseModel):
    """A revision task: rewrite ``item.response`` (answer with ``revision``)."""

    task_id: int
    kind: Literal["revision"] = "revision"
    item: SingleTaskItem
    editor_prefill: bool = Field(
        description="Whether the project's editor starts with the answer (else empty)."
    )


class RatingTaskOut(BaseModel):
    """A rating task: score ``item.response`` on ``scale`` (answer with ``score``)."""

    task_id: int
    kind: Literal["rating"] = "rating"
    item: SingleTaskItem
    scale: Scale


#: The next task of any kind, told apart by ``kind``.
AnyTaskOut = Annotated[TaskOut | RevisionTaskOut | RatingTaskOut, Field(discriminator="kind")]
AspectName = Annotated[Text, Field(min_length=1, max_length=100)]


class ResponseIn(BaseModel):
    """The answer that closes a task: exactly one of ``verdict`` (pairwise), ``revision``
    (revision), ``score`` (rating, a whole number on the project's scale, with optional
    ``aspects`` scores on the same scale), or ``skip`` (any kind; ``reason`` says why, and the
    item goes back to the pool)."""

    model_config = ConfigDict(extra="forbid")

    verdict: VerdictCode | None = None
    revision: Annotated[FilledText, Field(max_length=MAX_REVISION)] | None = Field(
        None, description="The rewritten answer (it may equal the original)."
    )
    score: Number | None = None
    aspects: Annotated[dict[AspectName, Number], Field(max_length=MAX_ASPECTS)] | None = Field(
        None, description="With a score: scores of named aspects, on the project's scale."
    )
    skip: bool = Field(False, description="Close the task without an answer (say why).")
    reason: Annotated[Text, Field(max_length=10_000)] | None = Field(None, validate_default=True)
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None

    @field_validator("aspects")
    @classmethod
    def _with_a_score(cls, value: dict[str, float] | None, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("score") is None:
            raise ValueError("aspects go with a score")
        return value

    @field_validator("reason")
    @classmethod
    def _skip_says_why(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("skip") and (value is None or not value.strip()):
            raise ValueError("a skip needs a reason: say why you skip the task")
        return value

    @model_validator(mode="after")
    def _one_answer(self) -> ResponseIn:
        given = [
            name for name in ("verdict", "revision", "score") if getattr(self, name) is not None
        ]
        given += ["skip"] if self.skip else []
        if len(given) != 1:
            raise ValueError(
                "send exactly one of 'verdict' (pairwise), 'revision' (revision), 'score' "
                f"(rating) or 'skip', got {given or 'none'}"
            )
        return self


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
    signals: dict[str, Any] | None = Field(
        default=None,
        description="Revision and rating projects: their quality signals (ratings: "
        "Krippendorff's alpha, interval and ordinal, per rater and per aspect, gold accuracy; "
        "revisions: edits, the CaR quality gain, gold accuracy, skips); null for pairwise.",
    )
    reliability: dict[str, Any] | None = Field(
        default=None,
        description="Pairwise projects: each contributor's estimated reliability by "
        "Dawid–Skene over the A/B/tie votes (accuracy with a 95% bootstrap CI over items, "
        "confusion matrix, votes; least reliable first in `annotators`), counting every vote; "
        "null for other kinds or before two contributors share an item "
        "(`reliability_reason` says why).",
    )
    reliability_reason: str | None = None


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
    alpha_interval: float | None = Field(
        None, description="Rating projects: Krippendorff's alpha (interval) against the others."
    )
    alpha_ordinal: float | None = Field(
        None, description="Rating projects: Krippendorff's alpha (ordinal) against the others."
    )
    unchanged_rate: float | None = Field(
        None, description="Revision projects: share of answers left unchanged."
    )
    mean_edit_distance: float | None = Field(
        None, description="Revision projects: mean word-level edit distance of a revision."
    )
    mean_gain: float | None = Field(
        None, description="Revision projects: mean CaR quality gain (revision minus original)."
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
# ROUND_MODELS, MODEL_ROUND_SCHEMES; a test keeps them equal) so that the app starts without
# loading the crowd and preference packages, and the OpenAPI docs list them.
RoundCandidate = Literal["sft", "dpo", "preference"]
RoundStrategy = Literal["random", "epsilon-greedy", "interleaved"]
RoundScheme = Literal["rank", "marginal", "leave-one-out", "shapley", "regression"]
RoundModel = Literal["length", "difference-bucket", "features-gbdt"]
#: What an sft or dpo round's winner is chosen by
#: (:data:`crowdtune.crowd.feedback.lm_reward.SELECT_BY`).
RoundSelectBy = Literal["gold", "reward"]
#: How much each vote counts (:data:`crowdtune.crowd.feedback.weights.VOTE_WEIGHTS`).
RoundVoteWeights = Literal["none", "dawid-skene"]


class RoundIn(BaseModel):
    """Settings of one Crowd-SFT round. ``preference`` rounds: see
    :class:`crowdtune.crowd.feedback.round.RoundSettings`; ``sft`` and ``dpo`` rounds:
    :class:`crowdtune.crowd.feedback.lm_round.ModelRoundSettings`."""

    model_config = ConfigDict(extra="forbid")

    candidate: RoundCandidate | None = Field(
        None,
        description="What each group trains: 'sft' fine-tunes the project's base model on the "
        "group's revisions (revision projects), 'dpo' on its votes (pairwise projects), "
        "'preference' a preference model on its votes (pairwise). Null: 'sft' for a revision "
        "project, 'preference' for a pairwise one.",
    )
    strategy: RoundStrategy = Field("random", description="How contributors are grouped.")
    scheme: RoundScheme = Field(
        "rank",
        description="How contributors earn points: rank, marginal, leave-one-out (every round "
        "kind), shapley (preference rounds), regression (sft and dpo rounds: each "
        "contributor's share estimated from all rounds' group gains).",
    )
    n_groups: Annotated[int, Field(ge=1, le=100, description="Groups (G) competing.")] = 4
    model: RoundModel = Field(
        "length", description="Preference rounds: the preference model each group trains."
    )
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = Field(
        None, description="Seed of every random draw; null draws one (the round records it)."
    )
    max_steps: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None,
        description="sft and dpo rounds: optimizer steps per candidate (null: the default of "
        "ModelRoundSettings).",
    )
    reward_model: Annotated[FilledText, Field(max_length=500)] | None = Field(
        None,
        description="sft and dpo rounds: a reward model's folder on the worker's machine (the "
        "--out of `crowdtune train reward`); every candidate's evaluation then also carries "
        "its reward-model win rate against the base on the gold prompts, with the "
        "length-controlled one. A missing folder fails the job.",
    )
    select_by: RoundSelectBy = Field(
        "gold",
        description="sft and dpo rounds: choose the winner by the gold metric, or by the "
        "reward-model win rate ('reward', needs reward_model; the round improves when the "
        "winner's win rate is above 0.5).",
    )
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None,
        description="sft and dpo rounds with a reward_model: new tokens per judged answer "
        "(null: the default of ModelRoundSettings).",
    )
    vote_weights: RoundVoteWeights = Field(
        "none",
        description="preference and dpo rounds: how much each vote counts. 'none': alike. "
        "'dawid-skene': by its annotator's Dawid–Skene reliability weight, fitted on all the "
        "project's votes (Cohen's kappa with the estimated true label, floored at 0: about 0 "
        "for a random voter, 0 for a contrarian); preference rounds train with the weights, "
        "dpo rounds drop the votes of weight 0. The round records each annotator's weight.",
    )


class RoundQueued(BaseModel):
    """A round accepted for the worker (202): follow it at ``/api/v1/jobs/{job_id}``."""

    job_id: int
    round: int = Field(description="The number the round will have (1 for the first).")
    state: str = Field(description="The job's state: 'queued' until a worker claims it.")
    candidate: RoundCandidate


class JobOut(BaseModel):
    """A job the worker runs (a Crowd-SFT round): its state, progress and result."""

    id: int
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="0 to 1.")
    message: str | None = Field(description="What the job is doing, or why it failed.")
    result: dict[str, Any] | None = Field(description="The outcome once it succeeded.")
    kind: str
    project_id: int | None
    attempts: int = Field(description="Times a worker started it.")
    max_attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class ModelOut(BaseModel):
    """A model of the project's lineage: the base model or a candidate of a round."""

    name: str
    round: int | None = Field(description="The round that trained it; null for the base model.")
    parent: str | None = Field(description="The model it was trained from.")
    evaluation: dict[str, Any] | None = Field(description="Its score on the gold items.")
    is_base: bool = Field(description="Whether the next round starts from it.")
    group: int | None = Field(description="The group whose feedback trained it.")
    winner: bool = Field(description="Whether it won its round.")
    created_at: datetime


class CandidateOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    group: int
    members: list[str]
    n_votes: int | None = Field(
        None, description="Preference rounds: the members' votes outside the gold items."
    )
    log_loss: float | None = Field(
        None, description="Preference rounds: mean log loss on the gold items (lower wins)."
    )
    accuracy: float | None = Field(None, description="Share of gold items predicted right.")
    rank: int | None = Field(description="0 = the winner; null without a candidate.")
    reason: str | None = Field(description="Why the group has no candidate.")
    evaluation: dict[str, Any] | None = Field(
        None, description="sft and dpo rounds: the candidate's score on the gold items."
    )


class RoundContributor(BaseModel):
    model_config = ConfigDict(extra="allow")

    contributor: str
    group: int
    votes: int | None = Field(
        None, description="Preference rounds: votes outside the gold items (training votes)."
    )
    rows: int | None = Field(None, description="sft and dpo rounds: the training rows.")
    points: float | None = Field(description="Points earned this round.")


class RoundOut(BaseModel):
    """A stored round. Fields marked as one kind's are null for the others."""

    model_config = ConfigDict(extra="allow")

    id: int
    project_id: int
    created_at: datetime
    candidate: RoundCandidate = Field(description="What the groups trained.")
    job_id: int | None = Field(description="The job that ran it.")
    round_number: int = Field(description="1 for the project's first round.")
    strategy: str
    scheme: str
    n_groups: int
    seed: int = Field(description="The seed used; pass it again to repeat the round.")
    winner: int | None = Field(description="The group of the best candidate.")
    improved: bool = Field(description="Whether the winner beat the base (and replaced it).")
    base_changed: bool = Field(description="Whether the project's base model changed.")
    points: dict[str, float | None] = Field(description="Points paid this round per contributor.")
    candidates: list[CandidateOut]
    contributors: list[RoundContributor]
    extra_fits: int = Field(description="Models trained for the point scheme.")
    settings: dict[str, Any]
    model: str | None = Field(None, description="Preference rounds: the preference model.")
    base_log_loss: float | None = Field(
        None, description="Preference rounds: gold log loss of the model the round started from."
    )
    base_source: str | None = None
    model_after: dict[str, Any] | str | None = Field(
        None, description="The current model after this round."
    )
    base_evaluation: dict[str, Any] | None = Field(
        None, description="sft and dpo rounds: the base model's score on the gold items."
    )
    base_name: str | None = Field(None, description="sft and dpo rounds: the model trained from.")
    base_after: str | None = Field(None, description="sft and dpo rounds: the base after it.")
    n_gold: int | None = None
    n_votes: int | None = None
    n_training_votes: int | None = None
    n_gold_votes_excluded: int | None = Field(
        None, description="Votes on gold items, never trained on."
    )
    skipped: list[str] | None = Field(None, description="Voters with votes on gold items only.")
    credit_methods: dict[str, str] | None = None
    evaluation: str | None = Field(
        None, description="Preference rounds: fingerprint of the gold items and the scoring."
    )
    annotator_weights: dict[str, float] | None = Field(
        None, description="With vote_weights 'dawid-skene': each annotator's vote weight."
    )


class ModelRatingOut(BaseModel):
    """One model of a project's model leaderboard."""

    model: str
    rating: float = Field(description="Bradley–Terry rating: 400 points per tenfold odds.")
    ci_low: float | None
    ci_high: float | None
    rank: int = Field(description="1 + the models whose interval lies wholly above this one's.")
    n_battles: int
    wins: int
    losses: int
    ties: int
    round: int | None = Field(description="The round that trained it (null: not a candidate).")
    is_base: bool = Field(description="Whether it is the project's base model now.")


class ModelLeaderboardOut(BaseModel):
    """The crowd's votes ranking the models that wrote a pairwise project's items."""

    project_id: int
    method: str
    confidence: float
    n_bootstrap: int
    n_votes: int = Field(description="Votes on items with two different models (the battles).")
    n_votes_without_models: int = Field(description="Votes on items without both model names.")
    models: list[ModelRatingOut] = Field(description="Best first.")
    note: str | None = Field(description="Why the list is empty, or models that never met.")
