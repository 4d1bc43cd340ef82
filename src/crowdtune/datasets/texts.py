"""Files of plain texts for the linguistic distribution analysis, read into one table.

:func:`read_texts` reads a file into a DataFrame with the columns ``id`` and ``text`` (and
``human_score`` / ``reward_score`` where the file has them); the texts of the data home's
datasets (``@goemotions``, ``@hh-rlhf``, ``@car``) come through
:func:`crowdtune.datasets.registry.load_texts`.

Files: ``.txt`` (one text per line; a blank line is an empty text), ``.jsonl`` (one object per
line with a string ``text``; blank lines skipped) or ``.csv`` (a ``text`` column; an empty cell is
an empty text). In JSONL and CSV an ``id`` field is kept (else ids are ``<file stem>-<line>``),
and numeric ``human_score`` / ``reward_score`` fields become float columns (missing: NaN).
Errors name the file and line. Empty texts are kept: the analysis counts them.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.textfile import json_lines, read_text

__all__ = ["TEXT_FILE_SUFFIXES", "SCORE_COLUMNS", "read_texts"]

#: File suffixes :func:`read_texts` reads.
TEXT_FILE_SUFFIXES = (".txt", ".jsonl", ".csv")
#: Optional numeric columns kept from JSONL and CSV files.
SCORE_COLUMNS = ("human_score", "reward_score")

_FILE_HOW = "write UTF-8 text: .txt one text per line, .jsonl objects with a string 'text', .csv "
_FILE_HOW += "with a 'text' column"


def _decoded_lines(path: Path) -> list[str]:
    """The file's lines (without line ends), or an error naming the first non-UTF-8 line."""
    text = read_text(path, _FILE_HOW)
    return text.split("\n") if text else []


def _score(value: object, path: Path, line: int, column: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        if isinstance(value, bool):  # float(True) is 1.0: a flag is not a score
            raise TypeError
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetFormatError(
            path,
            f"line {line}: expected a number, got {value!r}",
            _FILE_HOW,
            row=line,
            column=column,
        ) from None


def _records_frame(path: Path, records: list[tuple[int, dict[str, object]]]) -> pd.DataFrame:
    ids, texts = [], []
    scores: dict[str, list[float]] = {c: [] for c in SCORE_COLUMNS}
    present = set()
    for line, data in records:
        if "text" not in data:
            raise DatasetFormatError(
                path, f"line {line}: missing field 'text'", _FILE_HOW, row=line, column="text"
            )
        text = data["text"]
        if not isinstance(text, str):
            raise DatasetFormatError(
                path,
                f"line {line}: 'text' must be a string, got {type(text).__name__}",
                _FILE_HOW,
                row=line,
                column="text",
            )
        texts.append(text)
        given = data.get("id")
        ids.append(f"{path.stem}-{line}" if given is None or given == "" else str(given))
        for column in SCORE_COLUMNS:
            if column in data:
                present.add(column)
            scores[column].append(_score(data.get(column), path, line, column))
    frame = pd.DataFrame({"id": ids, "text": texts})
    for column in SCORE_COLUMNS:
        if column in present:
            frame[column] = scores[column]
    return frame


def read_texts(path: Path) -> pd.DataFrame:
    """A text file (formats in the module docstring) as ``id``, ``text`` and any score columns.

    Raises
    ------
    ValueError
        An unknown file type (the message lists the known ones).
    FileNotFoundError
        No file at ``path``.
    DatasetFormatError
        Bad content: non-UTF-8 bytes, invalid JSON, a missing ``text`` field, a non-numeric score
        (the message names the file and line).
    """
    name = path.name.lower().removesuffix(".gz")
    suffix = next((s for s in TEXT_FILE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"{path}: unknown file type; expected one of {', '.join(TEXT_FILE_SUFFIXES)} "
            "(optionally .gz)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    lines = _decoded_lines(path)
    if lines and lines[-1] == "":  # the final line end does not start another text
        lines = lines[:-1]
    lines = [line.removesuffix("\r") for line in lines]
    if suffix == ".txt":
        return pd.DataFrame(
            {"id": [f"{path.stem}-{i}" for i in range(1, len(lines) + 1)], "text": lines}
        )
    if suffix == ".jsonl":
        records = json_lines(path, _FILE_HOW)
        return _records_frame(path, records)
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n"))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetFormatError(
            path, "line 1: empty file, expected a header with 'text'", _FILE_HOW, row=1
        ) from None
    if "text" not in header:
        raise DatasetFormatError(
            path,
            f"line 1: missing column 'text' (header: {header})",
            _FILE_HOW,
            row=1,
            column="text",
        )
    rows = []
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetFormatError(
                path,
                f"line {line}: {len(row)} fields, header has {len(header)}",
                _FILE_HOW,
                row=line,
            )
        rows.append((line, dict(zip(header, row, strict=True))))
    return _records_frame(path, rows)  # type: ignore[arg-type]
