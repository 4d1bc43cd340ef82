"""What the API and the web pages both do: votes, stats, the leaderboard, exports, the check of
each row of an uploaded file of items (the upload itself: :mod:`crowdtune.server.uploads`),
Crowd-SFT rounds, the role check, and the HTTP status of each store error.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from fastapi import HTTPException
from fastapi import Response as HTTPResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from crowdtune.datasets.comparisons import (
    write_arena_csv,
    write_jsonl,
    write_trl_jsonl,
)
from crowdtune.records import Comparison, Verdict, comparisons_frame, unpaired_turns
from crowdtune.server.schemas import ItemIn, ResponseOut, RoundIn, StatsOut, VerdictCode
from crowdtune.server.scoring import contributor_breakdown, quality_note
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
from crowdtune.store.models import VERDICT_CODES, Round
from crowdtune.tables import jsonable
from crowdtune.validation import encodable_text, text_problem

#: Bootstrap resamples behind the agreement intervals of the project stats.
STATS_BOOTSTRAP = 200
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
#: The export formats: format -> (file suffix, media type).
EXPORTS = {
    "arena-csv": (".csv", "text/csv; charset=utf-8"),
    "jsonl": (".jsonl", "application/x-ndjson"),
    "trl": ("-trl.jsonl", "application/x-ndjson"),
}
ExportFormat = Literal["arena-csv", "jsonl", "trl"]


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
    out = ResponseOut(
        response_id=stored.id,
        task_id=stored.task_id,
        verdict=None
        if stored.verdict is None
        else cast(VerdictCode, VERDICT_CODES[stored.verdict]),
        revision=stored.revision,
        score=stored.score,
        aspects=stored.aspects,
        skipped=stored.skipped,
    )
    return out, created


# ---------------------------------------------------------------------------------------------
# stats and leaderboard


def project_stats(session: Session, project_id: int) -> StatsOut:
    """Progress counts, and inter-annotator agreement once two annotators share an item
    (otherwise ``agreement`` is None and ``agreement_reason`` says why)."""
    # Deferred: the preference package loads scikit-learn and SciPy, kept off the server's start.
    from crowdtune.preference.agreement import agreement

    counts = repo.progress(session, project_id).to_dict()
    comparisons = repo.project_comparisons(session, project_id)
    try:
        result = agreement(comparisons_frame(comparisons), n_bootstrap=STATS_BOOTSTRAP)
    except ValueError as exc:
        reason = "no votes yet" if not comparisons else str(exc)
        return StatsOut(progress=counts, agreement=None, agreement_reason=reason)
    return StatsOut(progress=counts, agreement=jsonable(result.to_dict()))


def leaderboard(session: Session, project_id: int, *, admin_view: bool) -> dict[str, Any]:
    """The project's leaderboard (:class:`~crowdtune.server.schemas.LeaderboardOut`): one row
    per contributor (:func:`~crowdtune.server.scoring.contributor_breakdown`) with the credit
    of the project's Crowd-SFT rounds, a note saying how that credit was earned, and one
    saying what the gold and agreement figures count: every vote in the ``admin_view``, else
    (annotators) closed items only, so that a vote never reveals gold answers or others'
    votes."""
    # Deferred: rounds runs the crowd package (scikit-learn, SciPy), kept off the server's start.
    from crowdtune.server.rounds import project_credit

    overlap = None if admin_view else repo.get_project(session, project_id).overlap
    votes = repo.project_votes(session, project_id)
    credit, note = project_credit(session, project_id)
    return {
        "project_id": project_id,
        "contributors": contributor_breakdown(votes, credit, overlap=overlap),
        "credit_note": note,
        "quality_note": quality_note(overlap),
    }


# ---------------------------------------------------------------------------------------------
# export and import


def export_download(
    session: Session, project_id: int, format: str, *, ties: Literal["drop", "keep"] = "drop"
) -> HTTPResponse:
    """Every vote of a project as a download: arena CSV, crowdtune JSONL (one line per vote) or
    TRL preference JSONL (ties dropped unless ``ties="keep"``).

    The arena CSV is safe to open in a spreadsheet: a cell that would run as a formula (it
    begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a single quote in
    front (:func:`~crowdtune.datasets.comparisons.defuse_formula`); JSONL and TRL keep the
    exact text. Text stored before the input checks existed that UTF-8 cannot encode (a lone
    surrogate) is written with U+FFFD in its place. The TRL rows need one response turn per
    prompt turn on each side; votes on items stored without (before the import checked it) are
    left out, and the header ``X-Left-Out`` counts them. Ids are ``{item}/{contributor}``,
    made unique (see :func:`_unique_ids`).
    """
    project = repo.get_project(session, project_id)
    comparisons = _unique_ids(
        [_encodable(c) for c in repo.project_comparisons(session, project_id)]
    )
    headers: dict[str, str] = {}
    if format == "trl":
        paired = [c for c in comparisons if _paired(c)]
        headers["X-Left-Out"] = str(len(comparisons) - len(paired))
        comparisons = paired
    suffix, media_type = EXPORTS[format]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"export{suffix}"
        if format == "arena-csv":
            write_arena_csv(comparisons, path, spreadsheet_safe=True)
        elif format == "jsonl":
            write_jsonl(comparisons, path)
        else:
            write_trl_jsonl(comparisons, path, ties)
        content = path.read_bytes()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-.") or "project"
    headers["Content-Disposition"] = f'attachment; filename="{slug}-votes{suffix}"'
    return HTTPResponse(content, media_type=media_type, headers=headers)


def _encodable(c: Comparison) -> Comparison:
    """The comparison with every character UTF-8 cannot encode replaced by U+FFFD
    (:func:`~crowdtune.validation.encodable_text`); itself when no text has a problem (the
    common case, found without copying)."""
    labels = (c.annotator, c.model_a, c.model_b, c.source)
    texts = (c.id, *c.prompt, *c.response_a, *c.response_b, *(t for t in labels if t))
    if not any(text_problem(t) for t in texts):
        return c

    def turns(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(map(encodable_text, values))

    def label(value: str | None) -> str | None:
        return None if value is None else encodable_text(value)

    return dataclasses.replace(
        c,
        id=encodable_text(c.id),
        prompt=turns(c.prompt),
        response_a=turns(c.response_a),
        response_b=turns(c.response_b),
        annotator=label(c.annotator),
        model_a=label(c.model_a),
        model_b=label(c.model_b),
        source=label(c.source),
    )


def _unique_ids(comparisons: list[Comparison]) -> list[Comparison]:
    """The votes with unique ids, as the writers need: an item without an external id is
    exported as ``item-{row id}``, which another item's external id may equal; a repeated id
    gets ``#2`` (``#3``, ...) appended, in vote order."""
    used: set[str] = set()
    out = []
    for c in comparisons:
        ident, n = c.id, 1
        while ident in used:
            n += 1
            ident = f"{c.id}#{n}"
        used.add(ident)
        out.append(c if ident == c.id else dataclasses.replace(c, id=ident))
    return out


def _paired(c: Comparison) -> bool:
    """Whether TRL rows can hold the vote: at least one turn, each side one per prompt turn."""
    sides = (c.response_a, c.response_b)
    return bool(c.prompt) and all(unpaired_turns(c.prompt, side) is None for side in sides)


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
    try:
        return ItemIn.model_validate(fields).model_dump(exclude_none=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        column = _COLUMN_OF_FIELD.get(str(error["loc"][0]), str(error["loc"][0]))
        problem = error["msg"].removeprefix("Value error, ")
        raise unprocessable(f"{name}, data row {row}, column {column!r}: {problem}") from None


# ---------------------------------------------------------------------------------------------
# Crowd-SFT rounds


def run_round(session: Session, project_id: int, body: RoundIn) -> Round:
    """Run one Crowd-SFT round with the API's settings and store it (see
    :func:`crowdtune.server.rounds.run_project_round`; ``ValueError`` says why a round cannot
    run)."""
    # Deferred: the crowd package loads scikit-learn and SciPy, kept off the server's start.
    from crowdtune.crowd.feedback.round import RoundSettings
    from crowdtune.server.rounds import run_project_round

    return run_project_round(session, project_id, RoundSettings(**body.model_dump()))
