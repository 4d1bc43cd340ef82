"""The admin page of a project and its forms: its kind and settings, stats, the quality signals
of a revision or rating project, Crowd-SFT rounds (pairwise), the import of items, exports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict, get_args

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Response as HTTPResponse
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from crowdtune.server import services, uploads
from crowdtune.server.deps import SessionDep
from crowdtune.server.pages.web import (
    CSRF_FIELD,
    PageError,
    check_csrf,
    csrf_token,
    page_project,
    render,
    require,
    signed_in,
)
from crowdtune.server.schemas import RoundIn, RoundModel, RoundScheme, RoundStrategy
from crowdtune.store import ConflictError
from crowdtune.store import repository as repo

router = APIRouter(include_in_schema=False)

#: The choices of the admin page's round form: the API's (``RoundIn``).
ROUND_CHOICES = {
    "strategy": get_args(RoundStrategy),
    "scheme": get_args(RoundScheme),
    "model": get_args(RoundModel),
}


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


@router.get("/projects/{project_id}/admin", response_class=HTMLResponse)
def admin_page(project_id: int, request: Request, session: SessionDep) -> Any:
    me, token = signed_in(request, session)
    require(me, "admin")
    project = page_project(session, project_id)
    scorer = request.app.state.quality_scorer
    stats = services.project_stats(session, project_id, scorer=scorer)
    return render(
        request,
        "admin.html",
        me=me,
        csrf=csrf_token(token),
        project=project,
        stats=stats,
        formats=list(services.export_formats(project.kind)),
        message=request.query_params.get("imported"),
        rounds=[stored.details for stored in repo.project_rounds(session, project_id)],
        round_choices=ROUND_CHOICES,
        ran=request.query_params.get("round"),
        signals=signal_sections(quality_signals(stats.signals)),
    )


@router.post("/projects/{project_id}/admin/rounds")
def run_round_page(
    project_id: int,
    request: Request,
    session: SessionDep,
    csrf_token_field: str = Form("", alias=CSRF_FIELD),
    strategy: str = Form("random"),
    scheme: str = Form("rank"),
    model: str = Form("length"),
    n_groups: str = Form("4"),
    seed: str = Form(""),
) -> Any:
    """Queue a Crowd-SFT round from the admin page (the API's settings, as form fields) for
    the worker, and go back to the page, which follows its job and lists the rounds."""
    me, token = signed_in(request, session)
    check_csrf(request, token, csrf_token_field)
    require(me, "admin")
    page_project(session, project_id)
    fields = {"strategy": strategy, "scheme": scheme, "model": model, "n_groups": n_groups}
    try:
        body = RoundIn.model_validate({**fields, "seed": seed.strip() or None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PageError(422, problems) from None
    try:
        job, _, _ = services.enqueue_round(session, project_id, body)
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    return RedirectResponse(f"/projects/{project_id}/admin?job={job.id}#rounds", 303)


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
