"""The admin page of a project and its forms: its kind and settings, stats, the quality signals
of a revision or rating project, Crowd-SFT rounds (pairwise and revision projects: the form
that queues one, its job followed live, the rounds and the model lineage), the import of items,
exports.

A round runs in the worker, so the page shows its job: state, progress and message as the page
was rendered, kept current by ``static/admin.js``, which polls :func:`job_json` (the page's
JSON, authenticated by the session cookie like the page) every 2 s while the job is queued or
running and reloads the page once it ends. Without script the page still shows the job's state
when it was rendered, and a link to refresh it (the CSP rules out a meta refresh's inline
alternative, and an auto-refreshing page would lose a half-filled form)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypedDict, get_args

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from crowdtune.server import services, uploads
from crowdtune.server.deps import SessionDep
from crowdtune.server.pages.web import (
    CSRF_FIELD,
    PageError,
    check_csrf,
    check_id,
    csrf_token,
    page_headers,
    page_project,
    render,
    require,
    signed_in,
)
from crowdtune.server.schemas import (
    JobOut,
    RoundIn,
    RoundModel,
    RoundScheme,
    RoundStrategy,
    RoundVoteWeights,
)
from crowdtune.store import ConflictError, NotFoundError
from crowdtune.store import repository as repo
from crowdtune.store.models import Job, Round

router = APIRouter(include_in_schema=False)

#: The choices of the admin page's round form: the API's (``RoundIn``). The candidates a
#: project offers, and the schemes each candidate pays by, come from
#: :data:`~crowdtune.server.services.ROUND_CANDIDATES` (:func:`round_form`).
ROUND_CHOICES = {
    "strategy": get_args(RoundStrategy),
    "scheme": get_args(RoundScheme),
    "model": get_args(RoundModel),
    "vote_weights": get_args(RoundVoteWeights),
}
#: Job states in which the page keeps following a job (and offers to cancel it).
ACTIVE_JOB_STATES = ("queued", "running")
#: How the page names each evaluation metric of a language-model candidate.
METRIC_LABELS = {"nll": "NLL", "accuracy": "accuracy"}


class SignalTable(TypedDict):
    """A list of rows inside a section of signals (per contributor, say), as text."""

    title: str
    columns: list[str]
    rows: list[list[str]]


class SignalSection(TypedDict):
    """One section of quality signals as the admin page shows it: its single values as
    (label, text) rows, then its tables."""

    title: str
    values: list[tuple[str, str]]
    tables: list[SignalTable]


def quality_signals(signals: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The quality signals of a revision or rating project
    (:func:`crowdtune.server.signals.project_signals`, as the project stats carry them) in
    sections for its admin page: a title for each result, mapped to its ``to_dict()``
    (:func:`signal_sections` lays them out). None for a pairwise project (its agreement has
    its own section)."""
    if signals is None:
        return None
    skipped = {"skipped": signals["skipped"]}
    if signals["kind"] == "rating":
        sections = {"Agreement of the ratings": {**signals["agreement"], **skipped}}
        for aspect, agreement in signals["aspects"].items():
            sections[f"Agreement on {aspect}"] = agreement
        sections["Gold accuracy"] = signals["gold"]
        return sections
    revisions = dict(signals["revisions"])
    gain = revisions.pop("gain")
    return {
        "Edits": {**revisions, **skipped},
        "Quality gain (CaR scorer: revision minus original)": gain
        if gain is not None
        else {"reason": revisions["gain_reason"]},
        "Gold accuracy (moved towards the reference revision)": signals["gold"],
    }


def signal_sections(signals: Mapping[str, Any] | None) -> list[SignalSection]:
    """The :func:`quality_signals` laid out for the admin page: in each section, the single
    values as (label, text) rows (an estimate with its interval on one line, ``None`` as a
    dash) and each list of rows (``to_dict()``'s per-contributor tables) as a table. None or
    empty signals give no section."""
    sections: list[SignalSection] = []
    for title, result in (signals or {}).items():
        values: list[tuple[str, str]] = []
        tables: list[SignalTable] = []
        fields = result if isinstance(result, Mapping) else {"value": result}
        for name, value in fields.items():
            if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
                columns = list(dict.fromkeys(key for row in value for key in row))
                rows = [[_text(row.get(column)) for column in columns] for row in value]
                tables.append(
                    {"title": _label(name), "columns": [_label(c) for c in columns], "rows": rows}
                )
            else:
                values.append((_label(name), _text(value)))
        sections.append({"title": str(title), "values": values, "tables": tables})
    return sections


def _label(name: object) -> str:
    return str(name).replace("_", " ")


def _text(value: Any) -> str:
    """A signal's value as the page shows it: 3 decimals, a dash for none, an estimate with
    its interval."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, Mapping):
        if "estimate" in value:
            text = _text(value["estimate"])
            if value.get("ci_low") is not None and value.get("ci_high") is not None:
                text += f" (CI {_text(value['ci_low'])} to {_text(value['ci_high'])})"
            return text
        return "; ".join(f"{_label(k)}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "–"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Crowd-SFT rounds on the page


def round_form(kind: str) -> dict[str, Any]:
    """What the round form of a project of ``kind`` offers: its ``candidates`` (the first is
    the default), the point ``schemes`` each as (scheme, candidates that pay by it), and the
    candidates that take ``max_steps``, a preference ``model`` and ``vote_weights``. The page
    marks every field and scheme with the candidates it applies to; ``admin.js`` hides the
    others (without script they all show, labelled, and the server refuses a scheme a candidate
    lacks)."""
    candidates = [name for name, (needs, _) in services.ROUND_CANDIDATES.items() if needs == kind]
    candidates.sort(key=lambda name: name != "preference")  # the default of RoundIn first
    schemes = [
        (scheme, [c for c in candidates if scheme in services.ROUND_CANDIDATES[c][1]])
        for scheme in ROUND_CHOICES["scheme"]
    ]
    return {
        "candidates": candidates,
        "schemes": [(scheme, users) for scheme, users in schemes if users],
        "max_steps": [c for c in candidates if c != "preference"],
        "model": [c for c in candidates if c == "preference"],
        "vote_weights": [c for c in candidates if c != "sft"],
    }


def evaluation_text(evaluation: Mapping[str, Any] | None) -> str:
    """A language-model evaluation (``metric``, ``value`` and its interval, ``diff`` against
    the round's base and its interval) on one line, e.g. ``NLL 2.311 (95% CI 2.2 to 2.4),
    -0.052 vs base (95% CI -0.09 to -0.01)``; a dash for none."""
    if not evaluation:
        return "–"
    metric = str(evaluation.get("metric", "value"))
    text = f"{METRIC_LABELS.get(metric, metric)} {_text(evaluation.get('value'))}"
    text += _interval(evaluation.get("value_ci_low"), evaluation.get("value_ci_high"))
    if evaluation.get("diff") is not None:
        text += f", {evaluation['diff']:+.3f} vs base"
        text += _interval(evaluation.get("ci_low"), evaluation.get("ci_high"))
    return text


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return ""
    return f" (95% CI {_text(low)} to {_text(high)})"


def round_rows(rounds: list[Round]) -> list[dict[str, Any]]:
    """The stored rounds as the page's table shows them, newest first: the winner and its
    members, the winner's and the base's evaluation (preference rounds: gold log loss; sft:
    NLL of the reference revisions with its CI against the base; dpo: accuracy of the implicit
    reward), whether the base changed, and the points paid to each member (a dash where a
    scheme left a member unscored, as leave-one-out past its budget does)."""
    rows = []
    for stored in reversed(rounds):
        details = stored.details
        candidates = {entry["group"]: entry for entry in details.get("candidates", [])}
        best = candidates.get(details.get("winner"))
        if stored.candidate == "preference":
            won = "–" if best is None else f"log loss {_text(best.get('log_loss'))}"
            base = f"log loss {_text(details.get('base_log_loss'))}"
            base_title = str(details.get("base_source") or "")
        else:
            won = evaluation_text(None if best is None else best.get("evaluation"))
            base = evaluation_text(details.get("base_evaluation"))
            base_title = str(details.get("base_name") or details.get("base") or "")
        points = ", ".join(
            f"{row['contributor']} {_points(row.get('points'))}"
            for row in details.get("contributors", [])
        )
        rows.append(
            {
                "number": details.get("round_number"),
                "candidate": stored.candidate,
                "strategy": stored.strategy,
                "scheme": stored.scheme,
                "model": details.get("model") if stored.candidate == "preference" else None,
                "winner": "none"
                if best is None
                else f"group {best['group']}: {', '.join(best.get('members', []))}",
                "evaluation": won,
                "base": base,
                "base_title": base_title,
                "base_changed": bool(details.get("improved")),
                "points": points or "–",
            }
        )
    return rows


def _points(value: Any) -> str:
    """Points as the page shows them (as the leaderboard does: 4 significant digits); a dash
    for a member the scheme left unscored."""
    return "–" if value is None else f"{float(value):.4g}"


def lineage_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's lineage (:func:`~crowdtune.server.services.lineage`) as the page's table
    shows it: name, round, parent, group, evaluation (:func:`evaluation_text`), and whether it
    is the base of the next round and whether it won its round."""
    return [
        {
            "name": model["name"],
            "round": "–" if model["round"] is None else model["round"],
            "parent": model["parent"] or "–",
            "group": "–" if model["group"] is None else model["group"],
            "evaluation": evaluation_text(model["evaluation"]),
            "is_base": model["is_base"],
            "winner": model["winner"],
        }
        for model in models
    ]


def page_job(session: Session, project_id: int, job_id: int) -> Job:
    """The job ``job_id`` of the project; a 404 page for a job of another project or none."""
    check_id(job_id, "job")
    try:
        job = repo.get_job(session, job_id)
    except NotFoundError as exc:
        raise PageError(404, str(exc)) from None
    if job.project_id != project_id:
        raise PageError(404, f"project {project_id} has no job {job_id}")
    return job


def shown_job(session: Session, project_id: int, asked: str | None) -> Job | None:
    """The round job the page shows: the one in its ``?job=`` (the page's redirect after
    queueing a round or cancelling one), else the project's newest round job, if any."""
    if asked is not None and re.fullmatch(r"[0-9]{1,20}", asked):  # ASCII: "²".isdigit()
        return page_job(session, project_id, int(asked))
    jobs = repo.project_jobs(session, project_id, kind="round")
    return jobs[0] if jobs else None


@router.get("/projects/{project_id}/admin", response_class=HTMLResponse)
def admin_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    require(me, "admin")
    project = page_project(session, project_id)
    stats = services.project_stats(
        session,
        project_id,
        scorer=request.app.state.quality_scorer,
        reliability_cache=request.app.state.reliability_cache,
    )
    rounds = project.kind != "rating"
    job = shown_job(session, project_id, request.query_params.get("job")) if rounds else None
    return render(
        request,
        "admin.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        stats=stats,
        formats=list(services.export_formats(project.kind)),
        message=request.query_params.get("imported"),
        rounds=round_rows(repo.project_rounds(session, project_id)) if rounds else [],
        round_choices=ROUND_CHOICES,
        round_form=round_form(project.kind) if rounds else None,
        job=job,
        job_active=job is not None and job.state in ACTIVE_JOB_STATES,
        lineage=lineage_rows(services.lineage(session, project_id)) if rounds else [],
        signals=signal_sections(quality_signals(stats.signals)),
    )


@router.post("/projects/{project_id}/admin/rounds")
def run_round_page(
    project_id: int,
    request: Request,
    session: SessionDep,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    candidate: str = Form(""),
    strategy: str = Form("random"),
    scheme: str = Form("rank"),
    model: str = Form("length"),
    n_groups: str = Form("4"),
    seed: str = Form(""),
    max_steps: str = Form(""),
    vote_weights: str = Form("none"),
) -> Any:
    """Queue a Crowd-SFT round from the admin page (the API's settings, as form fields; an
    empty field is the API's default) for the worker, and go back to the page, which follows
    its job and lists the rounds."""
    me, token = signed_in(request, session)
    check_csrf(request, token, csrf_token_field)
    require(me, "admin")
    page_project(session, project_id)
    fields = {
        "candidate": candidate.strip() or None,
        "strategy": strategy,
        "scheme": scheme,
        "model": model,
        "n_groups": n_groups,
        "seed": seed.strip() or None,
        "max_steps": max_steps.strip() or None,
        "vote_weights": vote_weights,
    }
    try:
        body = RoundIn.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PageError(422, problems) from None
    try:
        job, _, _ = services.enqueue_round(session, project_id, body)
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    return RedirectResponse(f"/projects/{project_id}/admin?job={job.id}#rounds", 303)


@router.get("/projects/{project_id}/admin/jobs/{job_id}")
def job_json(project_id: int, job_id: int, request: Request, session: SessionDep) -> Any:
    """A round job of the project as JSON (:class:`~crowdtune.server.schemas.JobOut`, as the
    API's ``GET /api/v1/jobs/{id}``), for the admin page's script: the page's session cookie
    authenticates it (signed out: 401 to a JSON caller; not an admin: 403)."""
    me, _ = signed_in(request, session)
    require(me, "admin")
    page_project(session, project_id)
    job = JobOut.model_validate(services.job_out(page_job(session, project_id, job_id)))
    return JSONResponse(job.model_dump(mode="json"), headers=page_headers())


@router.post("/projects/{project_id}/admin/jobs/{job_id}/cancel")
def cancel_job_page(
    project_id: int,
    job_id: int,
    request: Request,
    session: SessionDep,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
) -> Any:
    """Cancel a round job of the project from the admin page (a queued job at once, a running
    one at its next training step; see :func:`~crowdtune.store.repository.request_cancel`),
    and go back to the page showing it."""
    me, token = signed_in(request, session)
    check_csrf(request, token, csrf_token_field)
    require(me, "admin")
    page_project(session, project_id)
    repo.request_cancel(session, page_job(session, project_id, job_id).id)
    return RedirectResponse(f"/projects/{project_id}/admin?job={job_id}#rounds", 303)


@router.post("/projects/{project_id}/admin/items")
async def import_items(project_id: int, request: Request) -> Any:
    """Import an arena CSV uploaded from the admin page (field ``file``, optional ``gold``).
    Everything past reading the form (sign-in, decompressing, parsing, storing) runs on a
    worker thread, so a large import never stalls other requests."""
    form = await request.form()
    created = await run_in_threadpool(_import_upload, request, project_id, form)
    return RedirectResponse(f"/projects/{project_id}/admin?imported={created}", 303)


def _import_upload(request: Request, project_id: int, form: FormData) -> int:
    """Check the admin's session, then read and store the upload; the items it created."""
    factory = request.app.state.sessions
    with factory() as session:
        me, session_id = signed_in(request, session)
        check_csrf(request, session_id, str(form.get(CSRF_FIELD, "")))
        require(me, "admin")
        page_project(session, project_id)
        session.commit()  # end the read: no transaction stays open while the file is parsed
        try:
            items = uploads.upload_items(
                form, gold=form.get("gold") == "true", limit=uploads.upload_limit(request)
            )
            return repo.add_items(session, project_id, items)
        except HTTPException as exc:
            raise PageError(exc.status_code, str(exc.detail)) from None
        except ValueError as exc:
            raise PageError(422, str(exc)) from None
        except ConflictError as exc:
            raise PageError(services.error_status(exc), str(exc)) from None


@router.get("/projects/{project_id}/admin/export")
def export_page(
    project_id: int,
    request: Request,
    session: SessionDep,
    format: services.ExportFormat = "jsonl",
) -> HTTPResponse:
    """The API's export, for a signed-in admin's browser."""
    me, _ = signed_in(request, session)
    require(me, "admin")
    page_project(session, project_id)
    return services.export_download(session, project_id, format)
