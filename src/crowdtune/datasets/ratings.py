"""Files of ratings: JSON Lines, a spreadsheet table, and TRL's unpaired (KTO) format.

Three formats, written from :class:`~crowdtune.records.Rating` records:

- **JSON Lines**, one :meth:`Rating.to_dict` per line (:func:`write_ratings_jsonl`,
  :func:`read_ratings_jsonl`): crowdtune's own lossless format.
- **CSV** (:func:`write_ratings_csv`), write-only: one row per rating with the columns of
  :func:`~crowdtune.records.ratings_frame` (``id, prompt, response, score, scale_min,
  scale_max, contributor, source``, then ``aspect_<name>`` per aspect), the prompt's turns
  joined. With ``spreadsheet_safe=True`` (as the feedback server exports it), a text cell a
  spreadsheet would run as a formula gets a single quote in front
  (:func:`~crowdtune.datasets.comparisons.defuse_formula`).
- **KTO rows** (:func:`rating_kto_rows`), write-only: TRL's unpaired preference format
  (``prompt``, ``completion``, ``label``) for ``KTOTrainer``: ``label`` is true when the score
  is strictly above a threshold, by default the middle of the rating's scale (4 on 1 to 7), so
  a rating in the middle counts as undesirable.

As for revisions (:mod:`crowdtune.datasets.revisions`), a rating stores the prompt's user turns
without the assistant turns between them, so the KTO prompt is those turns joined with
:data:`~crowdtune.records.TURN_SEPARATOR`.

The reader validates the whole file and raises
:class:`~crowdtune.datasets.DatasetFormatError` naming the file, the line and the field of the
first problem. Names ending in ``.gz`` are read and written gzip-compressed; writers replace the
file atomically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crowdtune.datasets.comparisons import defuse_formula
from crowdtune.datasets.items import (
    FieldError,
    check_fields,
    checked_rows,
    optional_text,
    prompt_turns,
    record_id,
    required_text,
)
from crowdtune.datasets.textfile import atomic_path, json_lines, unique_ids, write_json_lines
from crowdtune.records import (
    DEFAULT_SCALE,
    Rating,
    check_scale,
    check_score,
    join_turns,
    ratings_frame,
)

__all__ = [
    "RATING_FIELDS",
    "rating_csv_rows",
    "rating_kto_rows",
    "read_ratings_jsonl",
    "write_rating_kto_jsonl",
    "write_ratings_csv",
    "write_ratings_jsonl",
]

_REQUIRED = ("id", "prompt", "response", "score")
_OPTIONAL = ("scale", "aspects", "contributor", "source")
#: Fields of a JSON Lines rating, in :meth:`Rating.to_dict`'s order.
RATING_FIELDS = ("id", "prompt", "response", "score", "scale", "aspects", "contributor", "source")
_HOW = (
    "fix the file, or write it again with crowdtune.datasets.ratings.write_ratings_jsonl "
    "(see the module docs of crowdtune.datasets.ratings for the format)"
)


def _checked(check: Any, field: str, *args: Any) -> Any:
    try:
        return check(*args)
    except ValueError as err:
        raise FieldError(field, str(err)) from None


def _rating_from_json(data: Mapping[str, Any]) -> Rating:
    check_fields(data, _REQUIRED, _OPTIONAL)
    scale = DEFAULT_SCALE
    if data.get("scale") is not None:
        scale = _checked(check_scale, "scale", data["scale"], "a scale")
    aspects = data.get("aspects")
    if aspects is not None:
        if not isinstance(aspects, dict):
            raise FieldError("aspects", f"expected an object of name: score, got {aspects!r:.80}")
        aspects = {
            required_text(name, "aspects"): _checked(
                check_score, "aspects", value, scale, f"aspect {name!r}"
            )
            for name, value in aspects.items()
        }
    return Rating(
        id=record_id(data["id"]),
        prompt=tuple(prompt_turns(data["prompt"])),
        response=required_text(data["response"], "response"),
        score=_checked(check_score, "score", data["score"], scale, "the score"),
        scale=scale,
        aspects=aspects,
        contributor=optional_text(data.get("contributor"), "contributor"),
        source=optional_text(data.get("source"), "source"),
    )


def read_ratings_jsonl(path: str | Path) -> list[Rating]:
    """Read ratings written by :func:`write_ratings_jsonl` (one JSON object per line).

    Parameters
    ----------
    path
        A ``.jsonl`` or ``.jsonl.gz`` file. Each non-blank line holds the fields of
        :meth:`Rating.to_dict`: ``id`` (a string, or an integer), ``prompt`` (a string or a
        list of strings), ``response`` (a string) and ``score`` (a number within the scale)
        are required; ``scale`` (``[lowest, highest]``, default 1 to 7), ``aspects`` (an
        object of name: score on the same scale), ``contributor`` and ``source`` (strings)
        are optional, each may be null.

    Returns
    -------
    list of Rating
        One per line, in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        A line is not a JSON object, misses a required field or has an unknown one, a field
        has the wrong type or holds a NUL or a lone surrogate, a score is off its scale, a
        scale is not two increasing numbers, or an id repeats. The error names the file, the
        1-based line and the field; nothing is returned.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no rating file at {path}")
    return checked_rows(path, json_lines(path, _HOW), _rating_from_json, _HOW)


def write_ratings_jsonl(ratings: Iterable[Rating], path: str | Path) -> Path:
    """Write ratings as JSON Lines, one :meth:`Rating.to_dict` per line.

    Parameters
    ----------
    ratings
        The records; ids must be unique (``ValueError`` naming the first that repeats).
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_json_lines((r.to_dict() for r in unique_ids(ratings, "rating")), Path(path))


def rating_csv_rows(
    ratings: Iterable[Rating], *, spreadsheet_safe: bool = False
) -> list[dict[str, object]]:
    """The rows :func:`write_ratings_csv` writes, as dicts in column order
    (:func:`~crowdtune.records.ratings_frame`'s columns; a missing aspect is NaN, an absent
    contributor or source None)."""
    frame = ratings_frame(unique_ids(ratings, "rating"))
    rows: list[dict[str, object]] = frame.to_dict("records")  # type: ignore[assignment]
    if spreadsheet_safe:
        rows = [
            {k: defuse_formula(v) if isinstance(v, str) else v for k, v in row.items()}
            for row in rows
        ]
    return rows


def write_ratings_csv(
    ratings: Iterable[Rating], path: str | Path, *, spreadsheet_safe: bool = False
) -> Path:
    """Write one CSV row per rating (:func:`rating_csv_rows`), for a spreadsheet or pandas.

    Parameters
    ----------
    ratings
        The records; ids must be unique (``ValueError`` naming the first that repeats).
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.
    spreadsheet_safe
        Give every text cell a spreadsheet would run as a formula (it begins with ``=``,
        ``+``, ``-``, ``@``, a tab or a carriage return) a single quote in front, as
        :func:`~crowdtune.datasets.comparisons.write_arena_csv` does; numbers are never
        changed. Off by default, so the text stays exact; the feedback server's export turns it
        on. An empty cell is a missing value (no contributor, no such aspect).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    rows = rating_csv_rows(ratings, spreadsheet_safe=spreadsheet_safe)
    columns = list(rows[0]) if rows else list(ratings_frame([]).columns)
    with atomic_path(path) as tmp:
        # CRLF line ends (RFC 4180) also make the writer quote a cell holding a lone carriage
        # return, as in write_arena_csv.
        pd.DataFrame(rows, columns=columns).to_csv(
            tmp,
            index=False,
            lineterminator="\r\n",
            compression="gzip" if path.name.endswith(".gz") else None,
        )
    return path


def rating_kto_rows(
    ratings: Iterable[Rating],
    *,
    threshold: float | None = None,
    conversational: bool = False,
) -> list[dict[str, object]]:
    """Rows in TRL's unpaired preference format, for ``KTOTrainer``.

    Parameters
    ----------
    ratings
        The records to export.
    threshold
        ``label`` is true when the score is strictly above it. None (default): the middle of
        each rating's own scale (``(lowest + highest) / 2``), so a 4 on a 1-to-7 scale is
        undesirable and a 5 desirable.
    conversational
        False (default): TRL's *standard* format, ``prompt`` and ``completion`` plain strings.
        True: its *conversational* format, ``prompt`` = ``[{"role": "user", ...}]`` and
        ``completion`` = ``[{"role": "assistant", ...}]``.

    Returns
    -------
    list of dict
        ``{"prompt", "completion", "label"}`` (``label`` a bool) per rating, in input order.

    Raises
    ------
    ValueError
        ``threshold`` is not a finite number.
    """
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    rows: list[dict[str, object]] = []
    for r in ratings:
        cut = (r.scale[0] + r.scale[1]) / 2 if threshold is None else threshold
        prompt: object = join_turns(r.prompt)
        completion: object = r.response
        if conversational:
            prompt = [{"role": "user", "content": prompt}]
            completion = [{"role": "assistant", "content": completion}]
        rows.append({"prompt": prompt, "completion": completion, "label": r.score > cut})
    return rows


def write_rating_kto_jsonl(
    ratings: Iterable[Rating],
    path: str | Path,
    *,
    threshold: float | None = None,
    conversational: bool = False,
) -> Path:
    """Write :func:`rating_kto_rows` as JSON Lines (``datasets.load_dataset("json", ...)``
    reads it); a ``.gz`` name is gzip-compressed, the file replaced atomically. Returns
    ``path``."""
    rows = rating_kto_rows(ratings, threshold=threshold, conversational=conversational)
    return write_json_lines(rows, Path(path))
