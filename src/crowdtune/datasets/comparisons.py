"""Files of pairwise comparisons: the arena CSV, JSON Lines, and TRL's preference format.

Three formats, each read into (or written from) :class:`~crowdtune.records.Comparison` records:

- **Arena CSV**, the layout of the Kaggle "LMSYS Chatbot Arena human preference" data: columns
  ``id, model_a, model_b, prompt, response_a, response_b, winner_model_a, winner_model_b,
  winner_tie``; the prompt and responses are JSON lists of strings, one per turn; the three
  winner columns are one-hot. crowdtune also writes (and reads back, when present) the optional
  columns ``annotator`` and ``source``, so a round trip loses nothing. Written with
  ``spreadsheet_safe=True`` (as the feedback server exports it), a cell a spreadsheet would run
  as a formula (``=1+1``, ``@SUM(A1)``) gets a single quote in front.
- **JSON Lines**, one :meth:`Comparison.to_dict` per line: crowdtune's own lossless format.
- **TRL preference rows** (``prompt``, ``chosen``, ``rejected``), write-only, for TRL's reward,
  DPO and related trainers.

Readers validate the whole file before returning and raise
:class:`~crowdtune.datasets.DatasetFormatError` naming the file, the row and the column of the
first problem, so a bad file never yields a partial list. The one thing a reader repairs
(losslessly, with a :class:`~crowdtune.datasets.DatasetRepairWarning` naming rows and columns)
is a lone surrogate escape in an arena CSV's turn cell (see :func:`read_arena_csv`). A file
without the winner columns (Kaggle's ``test.csv``) is read by :func:`read_arena_pairs`, to
predict on. Names ending in ``.gz`` are read and written gzip-compressed. Writers write to a
temporary file beside the target and rename it, so an interrupted write never leaves a
truncated file in place of a good one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from crowdtune.datasets.home import DatasetFormatError, DatasetRepairWarning
from crowdtune.datasets.textfile import atomic_path, json_lines, unique_ids, write_json_lines
from crowdtune.records import FRAME_COLUMNS, Comparison, Verdict, join_turns
from crowdtune.validation import InputError, check_choice, loads_json, text_problem

#: Columns an arena CSV without labels must have (Kaggle's ``test.csv``).
ARENA_PAIR_COLUMNS = ("id", "prompt", "response_a", "response_b")
#: Columns an arena CSV must have.
ARENA_REQUIRED_COLUMNS = (
    *ARENA_PAIR_COLUMNS,
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
)
#: Columns an arena CSV may have (absent or empty cells read as None).
ARENA_OPTIONAL_COLUMNS = ("model_a", "model_b", "annotator", "source")
#: Columns of :func:`read_arena_pairs`: those of :func:`~crowdtune.records.comparisons_frame`
#: but ``label``.
PAIR_FRAME_COLUMNS = tuple(name for name in FRAME_COLUMNS if name != "label")
#: Column order :func:`write_arena_csv` writes: Kaggle's order, then crowdtune's extra columns.
ARENA_COLUMNS = (
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
    "annotator",
    "source",
)
_WINNER_COLUMNS = {
    "winner_model_a": Verdict.A,
    "winner_model_b": Verdict.B,
    "winner_tie": Verdict.TIE,
}
_TURN_FIELDS = ("prompt", "response_a", "response_b")
_OPTIONAL_FIELDS = ("annotator", "model_a", "model_b", "source")
_JSONL_FIELDS = ("id", *_TURN_FIELDS, "verdict", *_OPTIONAL_FIELDS)
TIE_CHOICES = ("drop", "keep")
#: How a cell that a spreadsheet would run as a formula begins (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_HOW_TO_FIX = (
    "fix the file, or write it again with crowdtune.datasets.{writer} "
    "(see the module docs of crowdtune.datasets.comparisons for the format)"
)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no comparison file at {path}")


# ---------------------------------------------------------------------------------------------
# arena CSV


def _json_turns(cell: str, *, escaped: list[str]) -> tuple[str, ...]:
    """Parse a JSON list of strings (one per turn; ``null`` reads as an empty string); raise
    ``ValueError`` saying what is wrong (what :func:`crowdtune.validation.loads_json` refuses
    too: a NUL, ...). A lone surrogate is kept as its escape text and appended to ``escaped``."""
    try:
        value = loads_json(cell, escaped=escaped)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"not valid JSON ({err.msg} at character {err.pos}): {cell[:80]!r}"
        ) from None
    except InputError as err:
        turn = f"turn {err.where[0] + 1} " if err.where and isinstance(err.where[0], int) else ""
        raise ValueError(f"{turn}{err.problem}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of strings, got {type(value).__name__}")
    value = ["" if turn is None else turn for turn in value]
    if bad := [turn for turn in value if not isinstance(turn, str)]:
        raise ValueError(f"expected a JSON list of strings, but it holds {bad[0]!r}")
    return tuple(value)


def _check_text_cells(record: Mapping[Any, str]) -> tuple[str, str] | None:
    """The first cell of a row (in the columns read) holding text that
    :func:`~crowdtune.validation.text_problem` refuses (a NUL, a lone surrogate), as
    ``(column, problem)``; None when there is none."""
    for column in (*ARENA_REQUIRED_COLUMNS, *ARENA_OPTIONAL_COLUMNS):
        cell = record.get(column)
        if cell is not None and (problem := text_problem(cell)) is not None:
            return column, problem
    return None


def _repair_note(path: Path, repairs: list[tuple[int, str, list[str]]]) -> str:
    """What :func:`_read_arena` repaired, for a :class:`DatasetRepairWarning`."""
    count = sum(len(escapes) for _, _, escapes in repairs)
    shown = "; ".join(
        f"data row {row}, column {column!r} ({', '.join(escapes)})"
        for row, column, escapes in repairs[:3]
    )
    more = f"; and {len(repairs) - 3} more cells" if len(repairs) > 3 else ""
    return (
        f"{path}: kept {count} lone surrogate escape(s) as text (six characters such as "
        f"\\ud83d; UTF-8 cannot encode half a surrogate pair) in {shown}{more}"
    )


def _read_arena(
    path: Path, *, labels: bool, strict: bool = False
) -> list[tuple[Mapping[Any, str], dict[str, tuple[str, ...]], Verdict | None]]:
    """The checked rows of an arena CSV: each row's cells, its turns and (with ``labels``) its
    verdict; one reader for the labelled and the unlabelled layout (see :func:`read_arena_csv`
    and :func:`read_arena_pairs`). ``strict`` refuses a lone surrogate escape instead of
    keeping it as text."""
    _require_file(path)
    how = _HOW_TO_FIX.format(writer="write_arena_csv")
    required = ARENA_REQUIRED_COLUMNS if labels else ARENA_PAIR_COLUMNS
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DatasetFormatError(path, f"not a readable CSV file ({err})", how) from err
    if missing := [name for name in required if name not in frame.columns]:
        raise DatasetFormatError(
            path,
            f"missing column(s) {missing}; an arena CSV needs {list(required)} "
            f"and has {list(frame.columns)}",
            how,
            column=missing[0],
        )
    rows: list[tuple[Mapping[Any, str], dict[str, tuple[str, ...]], Verdict | None]] = []
    first_row: dict[str, int] = {}
    repairs: list[tuple[int, str, list[str]]] = []
    for row, record in enumerate(frame.to_dict("records"), start=1):
        if (bad := _check_text_cells(record)) is not None:
            raise DatasetFormatError(path, bad[1], how, row=row, column=bad[0])
        ident = record["id"]
        if not ident.strip():
            raise DatasetFormatError(path, "empty id", how, row=row, column="id")
        if ident in first_row:
            raise DatasetFormatError(
                path, f"id {ident!r} repeats data row {first_row[ident]}", how, row=row, column="id"
            )
        first_row[ident] = row
        turns = {}
        for column in _TURN_FIELDS:
            escaped: list[str] = []
            try:
                turns[column] = _json_turns(record[column], escaped=escaped)
            except ValueError as err:
                raise DatasetFormatError(path, str(err), how, row=row, column=column) from None
            if escaped and strict:
                problem = f"a lone surrogate escape ({escaped[0]}): UTF-8 cannot encode it"
                raise DatasetFormatError(path, problem, how, row=row, column=column)
            if escaped:
                repairs.append((row, column, escaped))
        rows.append((record, turns, _verdict(path, record, row, how) if labels else None))
    if repairs:
        warnings.warn(DatasetRepairWarning(_repair_note(path, repairs)), stacklevel=3)
    return rows


def _verdict(path: Path, record: Mapping[Any, str], row: int, how: str) -> Verdict:
    """The verdict of a row's one-hot winner columns, or a :class:`DatasetFormatError`."""
    for column in _WINNER_COLUMNS:
        if record[column].strip() not in {"0", "1"}:
            raise DatasetFormatError(
                path, f"expected 0 or 1, got {record[column]!r}", how, row=row, column=column
            )
    winners = [v for column, v in _WINNER_COLUMNS.items() if record[column].strip() == "1"]
    if len(winners) != 1:
        raise DatasetFormatError(
            path,
            f"the winner columns must be one-hot (exactly one 1), this row has {len(winners)}",
            how,
            row=row,
            column=", ".join(_WINNER_COLUMNS),
        )
    return winners[0]


def read_arena_csv(path: str | Path, *, strict: bool = False) -> list[Comparison]:
    """Read comparisons from an arena CSV (the Kaggle LMSYS Chatbot Arena layout).

    Parameters
    ----------
    path
        A ``.csv`` or ``.csv.gz`` file with the columns of :data:`ARENA_REQUIRED_COLUMNS`;
        ``model_a``, ``model_b``, ``annotator`` and ``source`` are optional (absent or empty
        cells give None) and other columns are ignored. ``prompt``, ``response_a`` and
        ``response_b`` hold JSON lists of strings, one per turn; ``null`` entries (as in the
        Kaggle data) read as empty strings. No text may hold a NUL character. A lone surrogate
        escape (``"\\ud83d"``: half an emoji's surrogate pair, which the Kaggle train.csv has in a
        few cells and which UTF-8 cannot encode) is kept as its escape text, the six characters
        ``\\ud83d`` (:func:`crowdtune.validation.escape_surrogates`), with a
        :class:`~crowdtune.datasets.DatasetRepairWarning` naming each such row and column:
        lossless, where U+FFFD would lose the code point and refusing would make the whole file
        unusable. An invalid escape (``\\x41``) is not JSON and is refused. The winner columns hold
        ``0``/``1`` with exactly one ``1`` per row.
    strict
        Refuse a lone surrogate escape (:class:`DatasetFormatError` naming row and column)
        instead of keeping it as text: what the feedback server does with an upload, whose
        texts are checked at the edge.

    Returns
    -------
    list of Comparison
        One per row, in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        A column is missing, a turn cell is not a JSON list of strings, the winner columns of a
        row are not one-hot, an id is empty or repeated, or a cell holds a NUL. The error names
        the file, the 1-based data row and the column; nothing is returned.
    """
    path = Path(path)
    return [
        Comparison(
            id=record["id"],
            prompt=turns["prompt"],
            response_a=turns["response_a"],
            response_b=turns["response_b"],
            verdict=verdict,
            annotator=record.get("annotator") or None,
            model_a=record.get("model_a") or None,
            model_b=record.get("model_b") or None,
            source=record.get("source") or None,
        )
        for record, turns, verdict in _read_arena(path, labels=True, strict=strict)
        if verdict is not None
    ]


def read_arena_pairs(path: str | Path) -> pd.DataFrame:
    """Read the pairs of an arena CSV without labels (the Kaggle test layout), to predict on.

    Parameters
    ----------
    path
        A ``.csv`` or ``.csv.gz`` file with the columns of :data:`ARENA_PAIR_COLUMNS` (Kaggle's
        ``test.csv``: ``id, prompt, response_a, response_b``); winner columns, when there, are
        not read. The optional columns and the cells follow :func:`read_arena_csv`
        (JSON lists of turns, ``null`` entries, a lone surrogate escape kept as text).

    Returns
    -------
    pandas.DataFrame
        One row per pair, in file order, with the columns of
        :func:`~crowdtune.records.comparisons_frame` but ``label`` (:data:`PAIR_FRAME_COLUMNS`):
        what every predictor's ``predict_proba`` reads.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        As :func:`read_arena_csv`, but for the winner columns.
    """
    path = Path(path)
    rows = [
        (
            record["id"],
            *(join_turns(turns[name]) for name in _TURN_FIELDS),
            *(record.get(name) or None for name in ("annotator", "model_a", "model_b", "source")),
        )
        for record, turns, _ in _read_arena(path, labels=False)
    ]
    return pd.DataFrame(rows, columns=list(PAIR_FRAME_COLUMNS))


def defuse_formula(cell: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula: one that begins with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a single quote in front (OWASP's rule
    against CSV injection); any other cell is returned unchanged.

    >>> [defuse_formula(c) for c in ("=1+1", "@SUM(A1)", "-2+3", "gpt-4", '["=1+1"]')]
    ["'=1+1", "'@SUM(A1)", "'-2+3", 'gpt-4', '["=1+1"]']
    """
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def write_arena_csv(
    comparisons: Iterable[Comparison], path: str | Path, *, spreadsheet_safe: bool = False
) -> Path:
    """Write comparisons as an arena CSV that :func:`read_arena_csv` reads back unchanged.

    Parameters
    ----------
    comparisons
        The records to write; ids must be unique.
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.
    spreadsheet_safe
        Make the file safe to open in a spreadsheet: every text cell that a spreadsheet would
        run as a formula (it begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
        return: ``=HYPERLINK(...)`` in a model name, an id or an annotator's name) gets a single
        quote in front (:func:`defuse_formula`). Off by default, so that a file written from
        your own records reads back unchanged; the feedback server's export turns it on,
        because whoever opens it did not write what is in it. Such cells then read back with
        the quote: use JSON Lines (:func:`write_jsonl`) for the exact text. The turn cells are
        JSON lists, which begin with ``[``, so they never change.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        An id repeats (the reader would reject the file).
    """
    path = Path(path)
    cell = defuse_formula if spreadsheet_safe else str
    rows = []
    for c in unique_ids(comparisons, "comparison"):
        rows.append(
            {
                "id": cell(c.id),
                "model_a": cell(c.model_a or ""),
                "model_b": cell(c.model_b or ""),
                **{
                    name: cell(json.dumps(list(getattr(c, name)), ensure_ascii=False))
                    for name in _TURN_FIELDS
                },
                **{column: int(c.verdict is v) for column, v in _WINNER_COLUMNS.items()},
                "annotator": cell(c.annotator or ""),
                "source": cell(c.source or ""),
            }
        )
    frame = pd.DataFrame(rows, columns=list(ARENA_COLUMNS))
    with atomic_path(path) as tmp:
        # CRLF line ends (RFC 4180) also make the writer quote a cell holding a lone carriage
        # return, which a reader would otherwise take for the end of the row.
        frame.to_csv(
            tmp,
            index=False,
            lineterminator="\r\n",
            compression="gzip" if path.name.endswith(".gz") else None,
        )
    return path


# ---------------------------------------------------------------------------------------------
# JSON Lines


def _comparison_from_json(data: object) -> Comparison:
    """Validate one decoded JSONL object; raise ``KeyError(field, problem)`` naming the field."""
    if not isinstance(data, dict):
        raise KeyError(None, f"expected a JSON object, got {type(data).__name__}")
    if unknown := [key for key in data if key not in _JSONL_FIELDS]:
        raise KeyError(unknown[0], f"unknown field(s) {unknown}; fields are {list(_JSONL_FIELDS)}")
    if missing := [key for key in ("id", *_TURN_FIELDS, "verdict") if key not in data]:
        raise KeyError(missing[0], f"missing field(s) {missing}")
    ident = data["id"]
    if isinstance(ident, bool) or not isinstance(ident, str | int) or not str(ident).strip():
        raise KeyError("id", f"expected a non-empty string, got {ident!r}")
    for field in _TURN_FIELDS:
        turns = data[field]
        if not (isinstance(turns, list) and all(isinstance(t, str) for t in turns)):
            raise KeyError(field, f"expected a list of strings, got {turns!r:.80}")
    for field in _OPTIONAL_FIELDS:
        if not isinstance(data.get(field), str | None):
            raise KeyError(field, f"expected a string or null, got {data[field]!r:.80}")
    for field in ("id", *_TURN_FIELDS, *_OPTIONAL_FIELDS):
        texts = data.get(field)
        for text in texts if isinstance(texts, list) else [texts]:
            if isinstance(text, str) and (problem := text_problem(text)) is not None:
                raise KeyError(field, problem)
    try:
        verdict = Verdict.parse(data["verdict"])
    except ValueError as err:
        raise KeyError("verdict", str(err)) from None
    return Comparison.from_dict({**data, "verdict": verdict})


def read_jsonl(path: str | Path) -> list[Comparison]:
    """Read comparisons written by :func:`write_jsonl` (one JSON object per line).

    Parameters
    ----------
    path
        A ``.jsonl`` or ``.jsonl.gz`` file. Each non-blank line holds the fields of
        :meth:`Comparison.to_dict`: ``id``, ``prompt``, ``response_a``, ``response_b`` (lists of
        strings) and ``verdict`` (``"A"``, ``"B"`` or ``"TIE"``) are required; ``annotator``,
        ``model_a``, ``model_b`` and ``source`` are optional strings or null. Blank lines are
        skipped.

    Returns
    -------
    list of Comparison
        One per line, in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        A line is not JSON, misses a required field or has an unknown one, a field has the wrong
        type or holds a NUL or a lone surrogate, a verdict is unknown, or an id repeats. The
        error's row is the 1-based line number and its column the field; nothing is returned.
    """
    path = Path(path)
    _require_file(path)
    how = _HOW_TO_FIX.format(writer="write_jsonl")
    comparisons: list[Comparison] = []
    first_line: dict[str, int] = {}
    for number, data in json_lines(path, how):
        try:
            comparison = _comparison_from_json(data)
        except KeyError as err:
            field, problem = err.args
            raise DatasetFormatError(path, problem, how, row=number, column=field) from None
        if comparison.id in first_line:
            raise DatasetFormatError(
                path,
                f"id {comparison.id!r} repeats line {first_line[comparison.id]}",
                how,
                row=number,
                column="id",
            )
        first_line[comparison.id] = number
        comparisons.append(comparison)
    return comparisons


def write_jsonl(comparisons: Iterable[Comparison], path: str | Path) -> Path:
    """Write comparisons as JSON Lines, one :meth:`Comparison.to_dict` per line.

    Parameters
    ----------
    comparisons
        The records to write; ids must be unique.
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        An id repeats (the reader would reject the file).
    """
    rows = (c.to_dict() for c in unique_ids(comparisons, "comparison"))
    return write_json_lines(rows, Path(path))


# ---------------------------------------------------------------------------------------------
# TRL preference format


def _is_single_turn(c: Comparison) -> bool:
    return len(c.prompt) == len(c.response_a) == len(c.response_b) == 1


def _conversation(
    c: Comparison, chosen: Sequence[str], rejected: Sequence[str]
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """Split a conversation into the shared prompt messages and each side's continuation."""
    if not len(c.prompt) == len(chosen) == len(rejected) >= 1:
        raise ValueError(
            f"comparison {c.id!r}: a conversation needs as many assistant turns on each side as "
            f"user turns, got {len(c.prompt)} user, {len(c.response_a)} A and "
            f"{len(c.response_b)} B turns"
        )
    # The sides share every assistant turn before the first one where they differ.
    split = next(
        (k for k, (x, y) in enumerate(zip(chosen, rejected, strict=True)) if x != y),
        len(chosen) - 1,
    )

    def user(k: int) -> dict[str, str]:
        return {"role": "user", "content": c.prompt[k]}

    def assistant(text: str) -> dict[str, str]:
        return {"role": "assistant", "content": text}

    prompt = [m for k in range(split) for m in (user(k), assistant(chosen[k]))] + [user(split)]

    def continuation(side: Sequence[str]) -> list[dict[str, str]]:
        tail = [assistant(side[split])]
        for k in range(split + 1, len(side)):
            tail += [user(k), assistant(side[k])]
        return tail

    return prompt, continuation(chosen), continuation(rejected)


def trl_rows(
    comparisons: Iterable[Comparison],
    ties: Literal["drop", "keep"] = "drop",
    *,
    conversational: bool | None = None,
) -> list[dict[str, object]]:
    """Rows in TRL's preference format (``prompt``, ``chosen``, ``rejected``).

    Single-turn comparisons use TRL's *standard* format: three plain strings. Multi-turn ones use
    its *conversational* format with an explicit prompt: lists of ``{"role", "content"}``
    messages. TRL's prompt is the part both completions share, so ``prompt`` holds the
    conversation up to the first assistant turn where the two sides differ (for HH-RLHF, where
    the sides share all but the last reply, that is every turn up to the last user turn), and
    ``chosen`` / ``rejected`` hold each side's own continuation from there: its differing
    assistant turn, then any later user turns and its later assistant turns. For an MT-Bench
    turn-2 vote the two first answers already differ, so the prompt is the first user turn and
    each completion carries its whole conversation (answer 1, user turn 2, answer 2). Putting
    the winner's earlier answers into the prompt would attach them to the loser's final answer,
    a conversation that never happened.

    Parameters
    ----------
    comparisons
        The votes to export.
    ties
        ``"drop"`` leaves ties out. ``"keep"`` writes a tie with ``chosen`` = response A and
        ``rejected`` = response B, and gives every row a boolean ``tie`` field so that a trainer
        can filter or weight them.
    conversational
        None (default): the conversational format when any comparison has more than one turn,
        else the standard one, so that every row of one export has the same types (a
        ``datasets.Dataset`` column cannot mix strings and message lists). True forces the
        conversational format; False forces the standard one and rejects multi-turn comparisons.

    Returns
    -------
    list of dict
        One row per exported comparison, in input order.

    Raises
    ------
    ValueError
        ``ties`` is unknown; ``conversational=False`` with a multi-turn comparison; a multi-turn
        comparison whose sides do not have one assistant turn per user turn.
    """
    check_choice(ties, TIE_CHOICES, "ties policy")
    items = list(comparisons)
    if conversational is None:
        conversational = not all(_is_single_turn(c) for c in items)
    rows: list[dict[str, object]] = []
    for c in items:
        tie = c.verdict is Verdict.TIE
        if tie and ties == "drop":
            continue
        chosen, rejected = (
            (c.response_b, c.response_a) if c.verdict is Verdict.B else (c.response_a, c.response_b)
        )
        row: dict[str, object]
        if conversational:
            prompt, chosen_messages, rejected_messages = _conversation(c, chosen, rejected)
            row = {"prompt": prompt, "chosen": chosen_messages, "rejected": rejected_messages}
        elif _is_single_turn(c):
            row = {"prompt": c.prompt[0], "chosen": chosen[0], "rejected": rejected[0]}
        else:
            raise ValueError(
                f"comparison {c.id!r} has {len(c.prompt)} user turns; the standard (string) "
                "format holds single-turn comparisons only, use conversational=True or None"
            )
        if ties == "keep":
            row["tie"] = tie
        rows.append(row)
    return rows


def write_trl_jsonl(
    comparisons: Iterable[Comparison],
    path: str | Path,
    ties: Literal["drop", "keep"] = "drop",
    *,
    conversational: bool | None = None,
) -> Path:
    """Write :func:`trl_rows` as JSON Lines (``datasets.load_dataset("json", ...)`` reads it).

    Parameters
    ----------
    comparisons, ties, conversational
        As in :func:`trl_rows`.
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_json_lines(trl_rows(comparisons, ties, conversational=conversational), Path(path))
