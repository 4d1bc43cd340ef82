"""Items of revision and rating projects read from files, and the field checks that every file
of single-response records shares.

A revision or rating project's item is one prompt and one answer. :func:`read_revision_items`
and :func:`read_rating_items` read them from JSON Lines or CSV (told apart by the name:
``.jsonl``, ``.csv``, each optionally ``.gz``) into the plain dicts that the feedback server's
JSON import and :func:`crowdtune.store.repository.add_items` take:

==============  ==========================================================================
field           meaning
==============  ==========================================================================
``prompt``      required, non-blank; in JSON Lines a string or a list of user turns, in a
                CSV the text of the cell (one turn)
``response``    required, non-blank: the answer to revise or to rate
``id``          optional, the item's external id (a string, or an integer in JSON Lines);
                unique within the file
``reference``   revision items only, optional: a known good revision (an expert's)
``gold``        rating items only, optional: the accepted score, a number, or an accepted
                range ``[low, high]``; in a CSV cell a number (``5``, ``4.5``) or the range
                as a JSON list (``[4, 6]``). Checked against the project's scale.
==============  ==========================================================================

An absent field, a JSON ``null`` and an empty CSV cell all mean "not given" for the optional
fields; other CSV columns are ignored, other JSON fields are an error (a misspelt ``refrence``
would otherwise be dropped without a word). Like every reader of :mod:`crowdtune.datasets`, the
readers check the whole file and raise :class:`~crowdtune.datasets.DatasetFormatError` naming
the file, the 1-based data row (the line of a JSON Lines file) and the field of the first
problem; a bad file never yields a partial list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.textfile import json_lines, read_csv_strings
from crowdtune.records import DEFAULT_SCALE, Revision, check_scale, check_score
from crowdtune.validation import InputError, check_choice, loads_json, text_problem

__all__ = [
    "ITEM_FILE_SUFFIXES",
    "ITEM_KINDS",
    "FieldError",
    "check_fields",
    "checked_rows",
    "gold_value",
    "optional_text",
    "prompt_turns",
    "read_items",
    "read_rating_items",
    "read_revision_items",
    "record_id",
    "required_text",
    "revision_items",
]

#: Kinds of single-response items, as the project kinds are named.
ITEM_KINDS = ("revision", "rating")
#: File names :func:`read_items` reads, with their format.
ITEM_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz")
_EXTRA_FIELD = {"revision": "reference", "rating": "gold"}

ITEMS_HOW = (
    "fix the file: each row needs a non-blank prompt and response, optionally an id and a "
    "reference (revision) or gold (rating) (see the module docs of crowdtune.datasets.items)"
)


class FieldError(ValueError):
    """A field of one record is wrong: ``field`` names it (None for the whole record),
    ``problem`` says what is wrong. Readers turn it into a
    :class:`~crowdtune.datasets.DatasetFormatError` with the file and row."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


# ---------------------------------------------------------------------------------------------
# field checks shared by the readers of items, revisions and ratings


def check_fields(
    data: Mapping[str, object], required: Sequence[str], optional: Sequence[str]
) -> None:
    """:class:`FieldError` for the first unknown or missing field of a decoded JSON record."""
    known = (*required, *optional)
    if unknown := [key for key in data if key not in known]:
        raise FieldError(unknown[0], f"unknown field(s) {unknown}; fields are {list(known)}")
    if missing := [key for key in required if key not in data]:
        raise FieldError(missing[0], f"missing field(s) {missing}")


def _checked_text(value: str, field: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise FieldError(field, problem)
    return value


def required_text(value: object, field: str, *, nonblank: bool = False) -> str:
    """``value`` if it is a string fit to store (:func:`~crowdtune.validation.text_problem`),
    and not blank when ``nonblank``; else a :class:`FieldError` naming ``field``."""
    if not isinstance(value, str):
        raise FieldError(field, f"expected a string, got {value!r:.80}")
    if nonblank and not value.strip():
        raise FieldError(field, "empty; give the text")
    return _checked_text(value, field)


def optional_text(value: object, field: str) -> str | None:
    """``value`` as by :func:`required_text`, or None for None (or an empty CSV cell: pass
    ``value or None``)."""
    return None if value is None else required_text(value, field)


def record_id(value: object, field: str = "id") -> str:
    """A record's id: a non-blank string, or an integer (returned as its decimal string)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise FieldError(field, f"expected a non-empty string, got {value!r:.80}")
    return _checked_text(str(value), field)


def prompt_turns(value: object, field: str = "prompt", *, nonblank: bool = False) -> list[str]:
    """A prompt as its user turns: a string is one turn, else a non-empty list of strings
    (each non-blank when ``nonblank``)."""
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise FieldError(
            field, f"expected a string or a non-empty list of strings, got {value!r:.80}"
        )
    for turn in turns:
        required_text(turn, field, nonblank=nonblank)
    return turns


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def gold_value(value: object, scale: tuple[float, float], field: str = "gold") -> Any:
    """A rating item's gold answer checked against ``scale``: a score (returned as a float) or
    an accepted range ``[low, high]`` with ``low <= high`` (returned as a list of two floats)."""
    if isinstance(value, list):
        bounds = [_finite(v) for v in value]
        if len(bounds) != 2 or None in bounds or bounds[0] > bounds[1]:  # type: ignore[operator]
            raise FieldError(
                field,
                f"a gold range is two numbers [low, high] with low <= high, got {value!r:.80}",
            )
        low, high = bounds
        for bound in (low, high):
            if not scale[0] <= bound <= scale[1]:  # type: ignore[operator]
                raise FieldError(
                    field,
                    f"the range {value!r} leaves the scale {scale[0]:g} to {scale[1]:g}",
                )
        return [low, high]
    try:
        return check_score(value, scale, "a gold score")
    except ValueError as err:
        raise FieldError(field, f"{err} (or a range [low, high])") from None


def _csv_gold(cell: str) -> object:
    """A CSV gold cell decoded: a JSON list for a range, else a number (nothing coerced
    silently: ``"five"`` is returned as it is, for :func:`gold_value` to refuse)."""
    text = cell.strip()
    if text.startswith("["):
        try:
            return loads_json(text)
        except (json.JSONDecodeError, InputError) as err:
            raise FieldError("gold", f"a range is a JSON list [low, high], got {text!r:.80}") from (
                err
            )
    try:
        return float(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------------------------
# items


def _item(
    data: Mapping[str, Any], kind: str, scale: tuple[float, float], *, csv: bool
) -> dict[str, Any]:
    extra = _EXTRA_FIELD[kind]
    if not csv:
        check_fields(data, ("prompt", "response"), ("id", extra))
    if csv:
        prompt: str | list[str] = required_text(data["prompt"], "prompt", nonblank=True)
    else:
        turns = prompt_turns(data["prompt"], nonblank=True)
        prompt = data["prompt"] if isinstance(data["prompt"], str) else turns
    item: dict[str, Any] = {
        "prompt": prompt,
        "response": required_text(data["response"], "response", nonblank=True),
    }
    # An empty CSV cell is "not given"; in JSON only null is.
    absent: tuple[object, ...] = (None, "") if csv else (None,)
    if (ident := data.get("id")) not in absent:
        item["id"] = record_id(ident)
    value = data.get(extra)
    if value in absent:
        return item
    if kind == "revision":
        item[extra] = required_text(value, extra, nonblank=True)
    else:
        item[extra] = gold_value(_csv_gold(str(value)) if csv else value, scale)
    return item


def read_items(
    path: str | Path,
    kind: Literal["revision", "rating"],
    *,
    scale: Sequence[float] = DEFAULT_SCALE,
) -> list[dict[str, Any]]:
    """The items of a revision or rating project from a JSON Lines or CSV file.

    Parameters
    ----------
    path
        A ``.jsonl`` or ``.csv`` file (each optionally ``.gz``) with the fields of the module
        docs: ``prompt``, ``response``, optional ``id`` and ``reference`` (revision) or
        ``gold`` (rating).
    kind
        ``"revision"`` or ``"rating"``.
    scale
        The rating project's ``(lowest, highest)`` score; every gold score or range must lie
        within it. Ignored for revision items.

    Returns
    -------
    list of dict
        One per row, in file order: ``{"prompt", "response"}`` plus ``"id"`` and
        ``"reference"`` / ``"gold"`` where given (``gold`` a float, or ``[low, high]``).

    Raises
    ------
    ValueError
        An unknown kind, a bad scale, or a file name with another suffix.
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        A row misses ``prompt`` or ``response`` or has one blank, a JSON Lines row has an
        unknown field, a field has the wrong type or holds a NUL or a lone surrogate, a gold
        answer is off the scale, or an id repeats; the error names the file, the 1-based data
        row (line) and the field.
    """
    check_choice(kind, ITEM_KINDS, "item kind")
    low_high = check_scale(tuple(scale), "scale")
    path = Path(path)
    if not path.name.endswith(ITEM_FILE_SUFFIXES):
        raise ValueError(
            f"cannot tell the format of {path}: accepted file names end in "
            f"{', '.join(ITEM_FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no item file at {path}")
    csv = path.name.endswith((".csv", ".csv.gz"))
    rows: Iterable[tuple[int, Mapping[str, Any]]]
    if csv:
        frame = read_csv_strings(path, ("prompt", "response"), ITEMS_HOW)
        records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
        rows = enumerate(records, start=1)
    else:
        rows = json_lines(path, ITEMS_HOW)
    return checked_rows(path, rows, lambda data: _item(data, kind, low_high, csv=csv), ITEMS_HOW)


def checked_rows(
    path: Path,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    parse: Callable[[Mapping[str, Any]], Any],
    how: str,
) -> list[Any]:
    """``parse`` of each ``(row number, data)``, ids unique; a :class:`FieldError` becomes a
    :class:`DatasetFormatError` naming the file, row and field."""
    out = []
    first_row: dict[str, int] = {}
    for number, data in rows:
        try:
            value = parse(data)
        except FieldError as err:
            raise DatasetFormatError(path, err.problem, how, row=number, column=err.field) from None
        ident = value.get("id") if isinstance(value, dict) else value.id
        if ident is not None:
            if ident in first_row:
                raise DatasetFormatError(
                    path, f"id {ident!r} repeats row {first_row[ident]}", how, row=number,
                    column="id",
                )  # fmt: skip
            first_row[ident] = number
        out.append(value)
    return out


def read_revision_items(path: str | Path) -> list[dict[str, Any]]:
    """:func:`read_items` of a revision project: ``{"prompt", "response", "reference"?,
    "id"?}`` per row."""
    return read_items(path, "revision")


def read_rating_items(
    path: str | Path, *, scale: Sequence[float] = DEFAULT_SCALE
) -> list[dict[str, Any]]:
    """:func:`read_items` of a rating project on ``scale``: ``{"prompt", "response",
    "gold"?, "id"?}`` per row."""
    return read_items(path, "rating", scale=scale)


def revision_items(revisions: Iterable[Revision]) -> list[dict[str, Any]]:
    """Revision records as items of a revision project: the original answer is the item's
    response, the record's reference (where it has one) the item's reference, its id the
    item's id; the prompt is the string of a single turn, else the list of turns. For
    ``@car`` (:func:`~crowdtune.datasets.car.load_car_revisions`) that makes the Alpaca
    answers the items and the expert revisions their references."""
    items = []
    for r in revisions:
        item: dict[str, Any] = {
            "id": r.id,
            "prompt": r.prompt[0] if len(r.prompt) == 1 else list(r.prompt),
            "response": r.original,
        }
        if r.reference is not None:
            item["reference"] = r.reference
        items.append(item)
    return items
