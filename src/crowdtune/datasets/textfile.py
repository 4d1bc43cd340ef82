"""Reading text files for the loaders: gzip-aware, UTF-8, errors that name the line.

Every loader of user files and datasets (comparisons, instruction data, text sets) reads through
these functions, so a bad byte, a bad JSON line or a missing CSV column gets the same message
everywhere; writers replace files atomically through :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal, Protocol, TypeVar, cast

import pandas as pd

from crowdtune.datasets.home import DatasetFormatError
from crowdtune.validation import json_depth_problem


def read_text(path: Path, how: str) -> str:
    """The whole file (``.gz`` decompressed) decoded as UTF-8, a byte-order mark dropped.

    Raises
    ------
    DatasetFormatError
        The gzip stream is broken, or a byte is not UTF-8: the message names its line.
    """
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError) as err:
        raise DatasetFormatError(path, f"not a readable gzip file ({err})", how) from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetFormatError(
            path,
            f"line {line}: not UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
            "save the file as UTF-8",
            how,
            row=line,
        ) from None


def json_lines(path: Path, how: str) -> list[tuple[int, dict[str, object]]]:
    """``(1-based line number, object)`` for each non-blank line of a JSON Lines file.

    Raises
    ------
    DatasetFormatError
        A line is not JSON, not a JSON object, or nested too deeply for the parser
        (:func:`~crowdtune.validation.json_depth_problem`); the message names the line. Or see
        :func:`read_text`.
    """
    rows = []
    for number, line in enumerate(read_text(path, how).splitlines(), start=1):
        if not line.strip():
            continue
        if (problem := json_depth_problem(line)) is not None:
            raise DatasetFormatError(path, f"line {number}: {problem}", how, row=number)
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(
                path, f"line {number}: malformed JSON ({err.msg}, column {err.colno})", how,
                row=number,
            ) from None  # fmt: skip
        if not isinstance(data, dict):
            raise DatasetFormatError(
                path, f"line {number}: expected a JSON object", how, row=number
            )
        rows.append((number, data))
    return rows


def read_csv_strings(path: Path, columns: Sequence[str], how: str) -> pd.DataFrame:
    """A CSV file (``.gz`` decompressed) as strings, nothing coerced, checked to have ``columns``.

    Raises
    ------
    DatasetFormatError
        The file is not a readable CSV file, or a column is missing (the message names it).
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DatasetFormatError(path, f"not a readable CSV file ({err})", how) from err
    if missing := [c for c in columns if c not in frame.columns]:
        raise DatasetFormatError(path, f"missing column(s) {missing}", how, column=missing[0])
    return frame


def expect_string(value: object, path: Path, how: str, row: int, column: str) -> str:
    """``value`` when it is a string, else a :class:`DatasetFormatError` naming row and column."""
    if not isinstance(value, str):
        raise DatasetFormatError(
            path, f"expected a string, got {value!r:.80}", how, row=row, column=column
        )
    return value


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes), renamed onto ``path`` on success,
    so a failed write leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{''.join(path.suffixes)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_text(path: Path, mode: Literal["r", "w"]) -> IO[str]:
    """``path`` opened as UTF-8 text without newline translation, gzip-compressed when its
    name ends in ``.gz``."""
    if path.name.endswith(".gz"):
        return cast(IO[str], gzip.open(path, f"{mode}t", encoding="utf-8", newline=""))
    return path.open(mode, encoding="utf-8", newline="")


def write_json_lines(rows: Iterable[dict[str, object]], path: Path) -> Path:
    """Write one JSON object per line (UTF-8, not ASCII-escaped; gzip for a ``.gz`` name),
    replacing ``path`` atomically (:func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp, open_text(tmp, "w") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_Record = TypeVar("_Record", bound=_HasId)


def unique_ids(records: Iterable[_Record], what: str) -> list[_Record]:
    """``records`` as a list; ``ValueError`` naming the first id that repeats (a writer's check:
    every reader refuses a file whose ids repeat). ``what`` names the records
    (``"comparison"``)."""
    out = list(records)
    seen: set[str] = set()
    for record in out:
        if record.id in seen:
            raise ValueError(f"{what} id {record.id!r} appears more than once; ids must be unique")
        seen.add(record.id)
    return out
