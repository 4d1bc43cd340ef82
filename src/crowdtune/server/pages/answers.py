"""What the annotation page shows of a task and reads back from it, for the three project kinds:
the task as the page's JSON (:func:`task_json`), the buttons of a rating scale and their keys
(:func:`scale_buttons`), the answer a submission carries (:func:`answer_fields`, JSON or form)
and the line that acknowledges it (:func:`ack_key`, :func:`ack_message`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypedDict

from crowdtune.records import join_turns
from crowdtune.server.pages.markdown import safe_markdown
from crowdtune.server.schemas import ResponseOut
from crowdtune.store.models import Project, Task

#: Longest reason a contributor may give for a skip, in characters (a short note, not an essay).
MAX_REASON = 500
#: Most scores a rating scale shows as buttons (0–10 fits); a longer scale gets a number field.
MAX_SCALE_BUTTONS = 11
#: The pairwise verdicts as the acknowledgement names them.
VERDICT_LABELS = {"a": "A is better", "b": "B is better", "tie": "tie"}
#: What a form field or JSON value may say to ask for a skip.
_SKIP_YES = (True, "true", "1", "on")
_SKIP_NO = (None, False, "", "false", "0")


class ScaleButton(TypedDict):
    """One score of a rating scale: its value and the key that presses it (None: no key)."""

    score: int
    key: str | None


def task_json(task: Task, project: Project) -> dict[str, Any]:
    """A task as the annotation page shows it: ``task_id``, ``idempotency_key`` (one per task,
    so a double submit stores one answer), ``kind``, ``prompt_html``, and by kind
    ``response_a_html``/``response_b_html`` (pairwise) or ``response_html`` (revision, rating;
    the item's answer, its last turn). A revision task also carries the answer as plain text,
    ``original`` (what the page's diff compares with), and ``prefill``: what the editor starts
    with (the answer, or nothing when the project's ``editor_prefill`` is off). Item text is
    rendered by :func:`~crowdtune.server.pages.markdown.safe_markdown`, which escapes it."""
    item = task.item
    data: dict[str, Any] = {
        "task_id": task.id,
        "idempotency_key": f"task-{task.id}",
        "kind": project.kind,
        "prompt_html": str(safe_markdown(join_turns(item.prompt))),
    }
    if project.kind == "pairwise":
        data["response_a_html"] = str(safe_markdown(join_turns(item.response_a)))
        data["response_b_html"] = str(safe_markdown(join_turns(item.response_b or [])))
        return data
    answer = item.response_a[-1]  # the one response, as the store's reads take it
    data["response_html"] = str(safe_markdown(answer))
    if project.kind == "revision":
        data["original"] = answer
        data["prefill"] = answer if project.editor_prefill else ""
    return data


def scale_buttons(scale: tuple[int, int]) -> list[ScaleButton] | None:
    """The buttons of a rating scale, lowest score first, each with the key that presses it.

    - every score is a digit (a scale within 0–9, such as 1–7 or 0–5): the digit itself;
    - otherwise, nine scores or fewer (such as −3…3 or 10–14): the keys 1…n by position;
    - otherwise (10 or 11 scores, such as 1–10 or 0–10): the scores 0–9 have their digit, the
      others no key (reach them with Tab or the arrow keys);
    - more than :data:`MAX_SCALE_BUTTONS` scores: None, and the page asks for the score in a
      number field instead.
    """
    low, high = scale
    scores = range(low, high + 1)
    if len(scores) > MAX_SCALE_BUTTONS:
        return None
    if low >= 0 and high <= 9:
        keys: list[str | None] = [str(s) for s in scores]
    elif len(scores) <= 9:
        keys = [str(n) for n in range(1, len(scores) + 1)]
    else:
        keys = [str(s) if 0 <= s <= 9 else None for s in scores]
    return [{"score": s, "key": k} for s, k in zip(scores, keys, strict=True)]


def scale_hint(buttons: list[ScaleButton] | None) -> str:
    """How the keyboard rates on a scale with these :func:`scale_buttons`, for the page's hint."""
    if buttons is None:
        return "type the score, then Enter"
    keyed = [b for b in buttons if b["key"]]
    hint = (
        "a score's number presses it"
        if all(b["key"] == str(b["score"]) for b in keyed)
        else "the key shown on a score presses it"
    )
    if len(keyed) < len(buttons):
        hint += "; Tab and the arrow keys reach the others"
    return hint


def answer_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`crowdtune.server.services.vote` that a submission of the
    annotation page carries: JSON (``{"verdict": "a"|"b"|"tie"}``, ``{"revision": text}``,
    ``{"score": n}`` or ``{"skip": true, "reason": text}``, each with an optional
    ``"seconds"``) or the same names as form fields (strings; ``skip`` ``"true"``).

    Which answer suits the task's kind, and the limits of a revision or a score, are the
    store's checks (:func:`~crowdtune.store.repository.submit_response`); this reads the
    fields, and asks a skip for its reason.

    Raises
    ------
    ValueError
        A field of the wrong type, a verdict other than a/b/tie, a score that is not a number,
        a skip without a reason (or one over :data:`MAX_REASON` characters), or seconds that
        are not a number. The message names the field.
    """
    fields: dict[str, Any] = {}
    skip, reason = body.get("skip"), body.get("reason")
    if skip not in _SKIP_NO:
        if skip not in _SKIP_YES:
            raise ValueError(f"skip must be true, got {skip!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason: say why you skip this task (a few words)")
        fields["skipped"] = True
    if reason not in (None, ""):
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise ValueError(f"reason must be a text of at most {MAX_REASON} characters")
        fields["reason"] = reason.strip()
    verdict = body.get("verdict")
    if verdict is not None:
        if verdict not in ("a", "b", "tie"):
            raise ValueError("verdict must be 'a', 'b' or 'tie'")
        fields["verdict"] = verdict
    revision = body.get("revision")
    if revision is not None:
        if not isinstance(revision, str):
            raise ValueError("revision must be a text")
        # A form post sends a textarea's line breaks as CRLF; the answer has LF.
        fields["revision"] = revision.replace("\r\n", "\n")
    score = body.get("score")
    if score is not None:
        fields["score"] = _number(score, "score")
    seconds = body.get("seconds")
    if seconds not in (None, ""):
        try:
            fields["seconds"] = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number, got {seconds!r}") from None
    return fields


def _number(value: Any, field: str) -> Any:
    """A form field's text as a number; anything else as it came (the store checks a JSON
    value, and refuses a text or a boolean there)."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{field} must be a number, got {value!r}") from None


def ack_key(stored: ResponseOut) -> str:
    """What a stored answer was, as the annotation page's ``?voted=`` names it: the verdict
    (``a``, ``b``, ``tie``), ``revision``, ``skip`` or the score."""
    if stored.skipped:
        return "skip"
    if stored.verdict is not None:
        return stored.verdict
    if stored.revision is not None:
        return "revision"
    return f"{stored.score:g}"


def ack_message(key: str | None) -> str:
    """The line that acknowledges an answer named by :func:`ack_key`; empty for anything else
    (the key comes back in a URL anyone can write, so only known keys say something)."""
    if key in VERDICT_LABELS:
        return f"Vote stored: {VERDICT_LABELS[key]}"
    if key == "revision":
        return "Revision stored"
    if key == "skip":
        return "Skipped: the task goes to someone else"
    if key is not None and re.fullmatch(r"-?\d{1,4}", key):
        return f"Score stored: {key}"
    return ""
