"""What the API and the web pages both do: answers (votes, revisions, scores, skips), stats, the
leaderboard, exports of every project kind, the check of each row of an uploaded file of items
(the upload itself: :mod:`crowdtune.server.uploads`), Crowd-SFT rounds, the role check, and the
HTTP status of each store error.

The API's routers (:mod:`crowdtune.server.routes`) and the pages (:mod:`crowdtune.server.pages`)
call these functions and only shape the answer: JSON for the API; HTML, redirects or the
page's JSON for the pages. A problem with the request is an :class:`HTTPException` (422 for
malformed input, 403 for a missing role), which the pages show as an error page; store errors
pass through and get the status :func:`error_status` gives them.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fastapi import HTTPException
from fastapi import Response as HTTPResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from crowdtune.datasets.comparisons import (
    write_arena_csv,
    write_jsonl,
    write_trl_jsonl,
)
from crowdtune.datasets.ratings import (
    write_rating_kto_jsonl,
    write_ratings_csv,
    write_ratings_jsonl,
)
from crowdtune.datasets.revisions import (
    revision_trl_rows,
    write_revision_sft_jsonl,
    write_revision_trl_jsonl,
    write_revisions_jsonl,
)
from crowdtune.records import (
    Comparison,
    Rating,
    Revision,
    Verdict,
    comparisons_frame,
    unpaired_turns,
)
from crowdtune.server.fit_cache import FitCache
from crowdtune.server.schemas import (
    ItemIn,
    JobOut,
    ResponseOut,
    RoundIn,
    StatsOut,
    VerdictCode,
)
from crowdtune.server.scorer import QualityScorer
from crowdtune.server.scoring import MIN_CLOSED_ITEMS, contributor_breakdown, quality_note
from crowdtune.store import (
    BusyError,
    ConflictError,
    CredentialError,
    ForbiddenError,
    NotFoundError,
    StoreError,
)
from crowdtune.store import repository as repo
from crowdtune.store.errors import ReusedKeyError
from crowdtune.store.models import VERDICT_CODES, Job, Project, Response
from crowdtune.tables import jsonable
from crowdtune.validation import encodable_text, text_problem

#: Bootstrap resamples behind the agreement intervals of the project stats.
STATS_BOOTSTRAP = 200
#: Why a revision or rating project's stats have no Dawid–Skene reliability.
NO_RELIABILITY = "Dawid–Skene reliability is for pairwise votes; see signals"
#: The HTTP status of each store error (any other :class:`StoreError` is 500).
STORE_ERROR_STATUS = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
    ReusedKeyError: 422,
    BusyError: 503,
    CredentialError: 401,
}
#: The columns of an arena CSV behind the item fields they are not named after.
_COLUMN_OF_FIELD = {"gold": "winner_model_a, winner_model_b, winner_tie"}
#: The export formats of every kind: format -> (file suffix, media type).
EXPORTS = {
    "arena-csv": (".csv", "text/csv; charset=utf-8"),
    "jsonl": (".jsonl", "application/x-ndjson"),
    "trl": ("-trl.jsonl", "application/x-ndjson"),
    "sft": ("-sft.jsonl", "application/x-ndjson"),
    "csv": (".csv", "text/csv; charset=utf-8"),
    "kto": ("-kto.jsonl", "application/x-ndjson"),
}
ExportFormat = Literal["arena-csv", "jsonl", "trl", "sft", "csv", "kto"]
#: The formats a project of each kind exports (see :func:`write_export`).
EXPORT_FORMATS = {
    "pairwise": ("arena-csv", "jsonl", "trl"),
    "revision": ("jsonl", "sft", "trl"),
    "rating": ("jsonl", "csv", "kto"),
}
#: What the answers of each kind are called in an export's file name.
_EXPORT_NOUN = {"pairwise": "votes", "revision": "revisions", "rating": "ratings"}


# ---------------------------------------------------------------------------------------------
# errors and roles


def error_status(exc: StoreError) -> int:
    """The HTTP status of a store error: 404 not found, 403 forbidden, 409 conflict, 422 an
    idempotency key reused with another body, 503 busy (the database stayed locked), 401 a
    refused token or session, else 500."""
    return next((code for kind, code in STORE_ERROR_STATUS.items() if isinstance(exc, kind)), 500)


def unprocessable(message: str) -> HTTPException:
    """422: the request is well formed but its content is not (``message`` says why)."""
    return HTTPException(422, message)


def check_role(role: str, roles: Sequence[str], *, what: str = "this") -> None:
    """Raise 403 unless ``role`` is one of ``roles``; the message says which role ``what``
    needs."""
    if role not in roles:
        raise HTTPException(403, f"{what} needs the role {' or '.join(roles)}; you are {role}")


# ---------------------------------------------------------------------------------------------
# votes


def vote(
    session: Session,
    task_id: int,
    contributor_id: int,
    *,
    verdict: Verdict | str | int | None = None,
    revision: str | None = None,
    score: float | None = None,
    aspects: dict[str, float] | None = None,
    skipped: bool = False,
    reason: str | None = None,
    seconds: float | None = None,
    idempotency_key: str | None = None,
    project_id: int | None = None,
) -> tuple[ResponseOut, bool]:
    """Store the answer that closes one of the contributor's tasks (committed before this
    returns): a vote, a revision, a score or a skip, as the project's kind takes
    (:func:`~crowdtune.store.repository.submit_response`). Returns the stored answer, and
    whether this call stored it (False: the idempotency key was seen before with the same
    body, and nothing was stored). With ``project_id``, a task of another project is not
    found. Raises what :func:`~crowdtune.store.repository.submit_response` raises (a bad
    answer: ``ValueError`` naming the field, 422; a key sent before with another body:
    :class:`~crowdtune.store.ReusedKeyError`, 422)."""
    stored, created = repo.submit_response(
        session,
        task_id,
        contributor_id,
        verdict=verdict,
        revision=revision,
        score=score,
        aspects=aspects,
        skipped=skipped,
        reason=reason,
        seconds=seconds,
        idempotency_key=idempotency_key,
        project_id=project_id,
    )
    return response_out(stored), created


def response_out(stored: Response | repo.StoredAnswer) -> ResponseOut:
    """A stored answer as the API returns it."""
    verdict = None if stored.verdict is None else VERDICT_CODES[stored.verdict]
    return ResponseOut(
        response_id=stored.id, task_id=stored.task_id, verdict=cast(VerdictCode | None, verdict),
        revision=stored.revision, score=stored.score, aspects=stored.aspects,
        skipped=stored.skipped,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# stats and leaderboard


def project_stats(session: Session, project_id: int, *, scorer: QualityScorer | None = None,
                  reliability_cache: FitCache | None = None) -> StatsOut:  # fmt: skip
    """Progress counts (skips among the responses) of a project of any kind; for a pairwise
    project inter-annotator agreement and each contributor's Dawid–Skene reliability
    (:func:`crowdtune.server.signals.pairwise_reliability`, fitted once per state of the votes
    with a ``reliability_cache``) once two annotators share an item
    (otherwise ``agreement`` and ``reliability`` are None and their reasons say why); for a
    revision or rating project its quality signals
    (:func:`crowdtune.server.signals.project_signals`), a rating project's agreement as
    ``agreement`` too. Every answer counts: the stats are for admins."""
    # Deferred: the preference and crowd packages load scikit-learn and SciPy, kept off the
    # server's start.
    from crowdtune.preference.agreement import agreement
    from crowdtune.server.signals import pairwise_reliability, project_signals

    counts = repo.progress(session, project_id).to_dict()
    kind = repo.get_project(session, project_id).kind
    if kind != "pairwise":
        signals = project_signals(session, project_id, scorer=scorer)
        assert signals is not None
        if kind == "rating":
            rating, reason = signals["agreement"], signals["agreement"]["reason"]
            return StatsOut(
                progress=counts, agreement=None if reason else rating, agreement_reason=reason,
                signals=signals, reliability_reason=NO_RELIABILITY,
            )  # fmt: skip
        reason = "revisions have no agreement figure; see signals (edits, quality gain, gold)"
        return StatsOut(progress=counts, agreement=None, agreement_reason=reason, signals=signals,
                        reliability_reason=NO_RELIABILITY)  # fmt: skip
    frame = comparisons_frame(repo.project_comparisons(session, project_id))
    reliability, why = pairwise_reliability(frame, cache=reliability_cache, project_id=project_id)
    stats = StatsOut(progress=counts, agreement=None, reliability=reliability,
                     reliability_reason=why)  # fmt: skip
    try:
        stats.agreement = jsonable(agreement(frame, n_bootstrap=STATS_BOOTSTRAP).to_dict())
    except ValueError as exc:
        stats.agreement_reason = "no votes yet" if frame.empty else str(exc)
    return stats


def leaderboard(
    session: Session,
    project_id: int,
    *,
    admin_view: bool,
    scorer: QualityScorer | None = None,
) -> dict[str, Any]:
    """The project's leaderboard (:class:`~crowdtune.server.schemas.LeaderboardOut`): one row
    per contributor with the credit of the project's Crowd-SFT rounds, a note saying how that
    credit was earned, and one saying what the gold and agreement figures count: every answer
    in the ``admin_view``, else (annotators) closed items only, so that an answer never reveals
    gold answers or others' answers. Pairwise rows:
    :func:`~crowdtune.server.scoring.contributor_breakdown`; revision and rating rows:
    :func:`single_answer_rows`."""
    # Deferred: rounds runs the crowd package (scikit-learn, SciPy), kept off the server's start.
    from crowdtune.server.rounds import project_credit

    project = repo.get_project(session, project_id)
    overlap = None if admin_view else project.overlap
    credit, note = project_credit(session, project_id)
    if project.kind == "pairwise":
        votes = repo.project_votes(session, project_id)
        rows = contributor_breakdown(votes, credit, overlap=overlap)
    else:
        rows = single_answer_rows(
            session, project, credit, closed_only=not admin_view, scorer=scorer
        )
    return {
        "project_id": project_id,
        "contributors": rows,
        "credit_note": note,
        "quality_note": quality_note(overlap),
    }


def single_answer_rows(
    session: Session,
    project: Project,
    credit: Mapping[str, float | None] | None,
    *,
    closed_only: bool,
    scorer: QualityScorer | None = None,
) -> list[dict[str, Any]]:
    """Leaderboard rows of a revision or rating project: per contributor, answers (as
    ``votes``), gold accuracy, and alpha against the others (ratings) or the unchanged rate,
    edits and mean quality gain (revisions), from
    :func:`crowdtune.server.signals.project_signals`. With ``closed_only`` (annotators) the
    figures count closed items only and stay None while a contributor has fewer than
    :data:`~crowdtune.server.scoring.MIN_CLOSED_ITEMS` answers on closed items, as for votes.
    Rows are sorted by answers, then name."""
    # Deferred: the crowd package loads scikit-learn and SciPy, kept off the server's start.
    from crowdtune.server.signals import contributor_signals, project_signals

    signals = project_signals(session, project.id, closed_only=closed_only, scorer=scorer)
    assert signals is not None
    figures = contributor_signals(signals)
    rows = []
    for entry in signals["answers"]:
        name = entry["contributor"]
        shown = not closed_only or entry["closed"] >= MIN_CLOSED_ITEMS
        row = {
            "contributor": name,
            "votes": entry["answers"],
            "gold_answered": None,
            "gold_correct": None,
            "gold_accuracy": None,
            "majority_agreement": {"share": None, "n": None},
            "credit": None if credit is None else credit.get(name, 0.0),
        }
        if shown:
            row.update({k: v for k, v in figures.get(name, {}).items() if k != "revisions"})
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# export and import


@dataclasses.dataclass(frozen=True)
class Export:
    """What :func:`write_export` wrote: how many answers the project has (``answers``), how
    many of them the format cannot hold (``left_out``: the ``X-Left-Out`` header of
    ``trl``), and the name to download the file as."""

    answers: int
    left_out: int | None
    filename: str


def export_formats(kind: str) -> tuple[str, ...]:
    """The export formats of a project of ``kind`` (:data:`EXPORT_FORMATS`)."""
    return EXPORT_FORMATS[kind]


def check_export(kind: str, format: str, *, threshold: float | None = None) -> None:
    """422 unless a project of ``kind`` exports ``format`` (naming the formats it does), or
    when a ``threshold`` comes with a format other than ``kto``."""
    if format not in EXPORT_FORMATS[kind]:
        raise unprocessable(
            f"format {format!r} does not fit a {kind} project; its formats are "
            f"{', '.join(EXPORT_FORMATS[kind])}"
        )
    if threshold is not None and format != "kto":
        raise unprocessable(f"threshold goes with format=kto, not format={format}")


def write_export(
    session: Session,
    project_id: int,
    format: str,
    path: Path,
    *,
    ties: Literal["drop", "keep"] = "drop",
    threshold: float | None = None,
) -> Export:
    """Write every answer of a project to ``path`` (``.gz`` compresses) in ``format``, one of
    the project kind's :data:`EXPORT_FORMATS`:

    - pairwise: ``arena-csv``, ``jsonl`` (one :class:`~crowdtune.records.Comparison` per vote)
      or ``trl`` (``prompt``/``chosen``/``rejected``; ties dropped unless ``ties="keep"``);
    - revision: ``jsonl`` (one :class:`~crowdtune.records.Revision` per revision), ``sft``
      (TRL's conversational language modelling rows, the revision as the assistant's turn) or
      ``trl`` (the revision ``chosen`` over the original, only where they differ);
    - rating: ``jsonl`` (one :class:`~crowdtune.records.Rating` per score), ``csv`` (a
      spreadsheet table) or ``kto`` (TRL's ``prompt``/``completion``/``label``, ``label`` true
      for a score above ``threshold``, by default the middle of the scale).

    Every CSV is safe to open in a spreadsheet: a cell that would run as a formula (it begins
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a single quote in front
    (:func:`~crowdtune.datasets.comparisons.defuse_formula`); the JSON Lines formats keep the
    exact text. Text stored before the input checks existed that UTF-8 cannot encode (a lone
    surrogate) is written with U+FFFD in its place. Ids are ``{item}/{contributor}``, made
    unique (see :func:`_unique_ids`). Skips are not answers and are left out.

    ``left_out`` counts answers the ``trl`` rows cannot hold: votes on items stored without
    one response turn per prompt turn (before the import checked it), revisions that left the
    answer as it was. Raises :class:`HTTPException` 422 (:func:`check_export`) for a format
    or threshold that does not fit the project, or a threshold off its scale.
    """
    project = repo.get_project(session, project_id)
    check_export(project.kind, format, threshold=threshold)
    if threshold is not None:
        low, high = project.scale or (0, 0)
        if not low <= threshold <= high:
            raise unprocessable(
                f"threshold must be on the project's scale, {low} to {high}, got {threshold:g}"
            )
    left_out = None
    if project.kind == "revision":
        revisions = _unique_ids(
            [_encodable(r) for r in repo.project_revisions(session, project_id)]
        )
        answers = len(revisions)
        if format == "jsonl":
            write_revisions_jsonl(revisions, path)
        elif format == "sft":
            write_revision_sft_jsonl(revisions, path)
        else:
            left_out = answers - len(revision_trl_rows(revisions))
            write_revision_trl_jsonl(revisions, path)
    elif project.kind == "rating":
        ratings = _unique_ids([_encodable(r) for r in repo.project_ratings(session, project_id)])
        answers = len(ratings)
        if format == "jsonl":
            write_ratings_jsonl(ratings, path)
        elif format == "csv":
            write_ratings_csv(ratings, path, spreadsheet_safe=True)
        else:
            write_rating_kto_jsonl(ratings, path, threshold=threshold)
    else:
        comparisons = _unique_ids(
            [_encodable(c) for c in repo.project_comparisons(session, project_id)]
        )
        answers = len(comparisons)
        if format == "arena-csv":
            write_arena_csv(comparisons, path, spreadsheet_safe=True)
        elif format == "jsonl":
            write_jsonl(comparisons, path)
        else:
            paired = [c for c in comparisons if _paired(c)]
            left_out = answers - len(paired)
            write_trl_jsonl(paired, path, ties)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-.") or "project"
    filename = f"{slug}-{_EXPORT_NOUN[project.kind]}{EXPORTS[format][0]}"
    return Export(answers, left_out, filename)


def export_download(
    session: Session,
    project_id: int,
    format: str,
    *,
    ties: Literal["drop", "keep"] = "drop",
    threshold: float | None = None,
) -> HTTPResponse:
    """Every answer of a project as a download in ``format`` (:func:`write_export`), named
    ``{project}-{votes|revisions|ratings}{suffix}``; the header ``X-Left-Out`` counts the
    answers a ``trl`` file leaves out."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"export{EXPORTS[format][0]}"
        written = write_export(session, project_id, format, path, ties=ties, threshold=threshold)
        content = path.read_bytes()
    headers = {"Content-Disposition": f'attachment; filename="{written.filename}"'}
    if written.left_out is not None:
        headers["X-Left-Out"] = str(written.left_out)
    return HTTPResponse(content, media_type=EXPORTS[format][1], headers=headers)


Record = TypeVar("Record", Comparison, Revision, Rating)


def _encodable_value(value: object) -> object:
    """``value`` (a text, a tuple of turns, a mapping with text keys) with every character
    UTF-8 cannot encode replaced by U+FFFD; ``value`` itself when nothing needs it."""
    if isinstance(value, str):
        return value if text_problem(value) is None else encodable_text(value)
    if isinstance(value, tuple) and any(isinstance(v, str) and text_problem(v) for v in value):
        return tuple(encodable_text(v) if isinstance(v, str) else v for v in value)
    if isinstance(value, Mapping) and any(isinstance(k, str) and text_problem(k) for k in value):
        return {encodable_text(k) if isinstance(k, str) else k: v for k, v in value.items()}
    return value


def _encodable(record: Record) -> Record:
    """The record with every character UTF-8 cannot encode replaced by U+FFFD
    (:func:`~crowdtune.validation.encodable_text`) in each of its texts; itself when no text
    has a problem (the common case, found without copying)."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        fixed = _encodable_value(value)
        if fixed is not value:
            changes[field.name] = fixed
    return dataclasses.replace(record, **changes) if changes else record


def _unique_ids(records: list[Record]) -> list[Record]:
    """The records with unique ids, as the writers need: an item without an external id is
    exported as ``item-{row id}``, which another item's external id may equal; a repeated id
    gets ``#2`` (``#3``, ...) appended, in answer order."""
    used: set[str] = set()
    out = []
    for record in records:
        ident, n = record.id, 1
        while ident in used:
            n += 1
            ident = f"{record.id}#{n}"
        used.add(ident)
        out.append(record if ident == record.id else dataclasses.replace(record, id=ident))
    return out


def _paired(c: Comparison) -> bool:
    """Whether TRL rows can hold the vote: at least one turn, each side one per prompt turn."""
    sides = (c.response_a, c.response_b)
    return bool(c.prompt) and all(unpaired_turns(c.prompt, side) is None for side in sides)


def checked_item(
    model: type[BaseModel],
    fields: Mapping[str, Any],
    *,
    where: str,
    context: Any = None,
    columns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``fields`` checked like an item of a JSON import (``model``: text, lengths, turns,
    a gold answer on the ``context``'s scale), as the dict the store takes. 422 naming
    ``where`` (the file and row) and the column of the first problem (the field's name, or
    what ``columns`` maps it to)."""
    try:
        return model.model_validate(fields, context=context).model_dump(exclude_none=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        column = (columns or {}).get(field, field)
        problem = error["msg"].removeprefix("Value error, ")
        raise unprocessable(f"{where}, column {column!r}: {problem}") from None


def import_row(name: str, row: int, comparison: Comparison, gold: bool) -> dict[str, Any]:
    """The item of one comparison read from an uploaded file (data row ``row`` of ``name``),
    checked like an item of a JSON import (:class:`~crowdtune.server.schemas.ItemIn`: text,
    lengths, one response turn per prompt turn); its verdict is the gold answer when ``gold``.
    422 naming the file, the row and the column of the first problem."""
    fields = {
        "prompt": list(comparison.prompt),
        "response_a": list(comparison.response_a),
        "response_b": list(comparison.response_b),
        "model_a": comparison.model_a,
        "model_b": comparison.model_b,
        "gold": comparison.verdict.name.lower() if gold else None,
        "id": comparison.id,
    }
    return checked_item(ItemIn, fields, where=f"{name}, data row {row}", columns=_COLUMN_OF_FIELD)


# ---------------------------------------------------------------------------------------------
# Crowd-SFT rounds


#: The project kind each round candidate trains on, and the point schemes it offers.
ROUND_CANDIDATES = {
    "sft": ("revision", ("rank", "marginal", "leave-one-out", "regression")),
    "dpo": ("pairwise", ("rank", "marginal", "leave-one-out", "regression")),
    "preference": ("pairwise", ("rank", "marginal", "leave-one-out", "shapley")),
}


def enqueue_round(session: Session, project_id: int, body: RoundIn) -> tuple[Job, int, str]:
    """Queue a Crowd-SFT round for the worker; returns the job, the round's number and the
    candidate kind. Rounds train, so they never run in a request (see
    :mod:`crowdtune.worker.rounds`).

    Raises
    ------
    ValueError
        The round cannot run on this project: a candidate kind for another kind of project, a
        point scheme the candidate does not offer, or no gold items to score candidates on.
    ConflictError
        A round of the project is queued or running already.
    """
    project = repo.get_project(session, project_id)
    if project.kind == "rating":
        raise ValueError(
            "Crowd-SFT rounds need a pairwise or a revision project (they train on votes or "
            f"revisions); project {project_id} is a rating project"
        )
    candidate = body.candidate or ("sft" if project.kind == "revision" else "preference")
    kind, schemes = ROUND_CANDIDATES[candidate]
    if project.kind != kind:
        raise ValueError(
            f"{candidate} rounds need a {kind} project; project {project_id} is a "
            f"{project.kind} project"
        )
    if body.scheme not in schemes:
        raise ValueError(
            f"{candidate} rounds pay by {', '.join(schemes)}; got scheme {body.scheme!r}"
        )
    has_gold = (
        any(gold.reference for gold in repo.project_single_gold(session, project_id))
        if kind == "revision"
        else bool(repo.project_gold_items(session, project_id))
    )
    if not has_gold:
        what = "a reference revision" if kind == "revision" else "a 'gold' answer ('a', 'b', 'tie')"
        raise ValueError(
            "the project has no gold items: a round scores every candidate on items with a "
            f"known answer, which it never trains on; import items with {what} first"
        )
    if active := repo.project_jobs(session, project_id, kind="round", active=True):
        raise ConflictError(
            f"round job {active[0].id} of project {project_id} is {active[0].state}; wait for "
            f"it (GET /api/v1/jobs/{active[0].id}) or cancel it"
        )
    if candidate == "preference" and (body.reward_model is not None or body.select_by != "gold"):
        raise ValueError(
            "preference rounds score their candidates by the gold log loss; reward_model and "
            "select_by are for sft and dpo rounds"
        )
    if body.select_by == "reward" and body.reward_model is None:
        raise ValueError("select_by 'reward' needs a reward_model (a folder on the worker)")
    if candidate == "sft" and body.vote_weights != "none":
        raise ValueError("vote_weights weighs votes: it is for preference and dpo rounds")
    payload = body.model_dump(exclude={"candidate"})
    if candidate == "preference":
        for option in ("max_steps", "reward_model", "select_by", "max_new_tokens"):
            payload.pop(option)
    else:
        payload.pop("model")
    for option in ("max_steps", "max_new_tokens"):
        if payload.get(option) is None:
            payload.pop(option, None)
    number = repo.project_round_count(session, project_id) + 1
    job = repo.enqueue_job(
        session, "round", {"candidate": candidate, **payload}, project_id=project_id
    )
    return job, number, candidate


def job_out(job: Job) -> dict[str, Any]:
    """A job as the API returns it (:class:`~crowdtune.server.schemas.JobOut`)."""
    return {column: getattr(job, column) for column in JobOut.model_fields}


def lineage(session: Session, project_id: int) -> list[dict[str, Any]]:
    """The project's models as the API returns them (:class:`~crowdtune.server.schemas.ModelOut`):
    the stored lineage, else the project's base model alone."""
    models = repo.project_models(session, project_id)
    if not models:
        project = repo.get_project(session, project_id)
        return [
            {
                "name": project.base_model,
                "round": None,
                "parent": None,
                "evaluation": None,
                "is_base": True,
                "group": None,
                "winner": False,
                "created_at": project.created_at,
            }
        ]
    return [
        {
            "name": model.name,
            "round": model.round_number,
            "parent": model.parent,
            "evaluation": model.evaluation,
            "is_base": model.is_base,
            "group": model.group,
            "winner": model.winner,
            "created_at": model.created_at,
        }
        for model in models
    ]
