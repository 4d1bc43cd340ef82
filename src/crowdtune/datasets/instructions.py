"""Instruction-tuning data in the Alpaca style: ``instruction``, ``input`` (optional), ``output``.

Three formats, told apart by the file name (a trailing ``.gz`` means gzip-compressed):

- ``.jsonl``: one JSON object per line;
- ``.json``: one JSON array of objects (Stanford Alpaca's own ``alpaca_data.json``);
- ``.csv``: a header row naming the fields.

A file with another name is read as a JSON array if its first character is ``[``, as JSON Lines
if it is ``{``, and as CSV otherwise. Fields other than the three are kept as extra columns. Every
error is a :class:`~crowdtune.datasets.DatasetFormatError` naming the file and the line (JSON Lines,
bytes that are not UTF-8, malformed JSON) or the item / data row (JSON arrays, CSV).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.textfile import atomic_path, json_lines, read_text

#: The fields every item has, in column order; ``input`` may be missing (read as "").
INSTRUCTION_FIELDS = ("instruction", "input", "output")
#: File formats by name.
INSTRUCTION_FORMATS = ("jsonl", "json", "csv")

#: How to fix a malformed instruction file, for the errors.
INSTRUCTIONS_HOW = (
    "write one object per item with string fields instruction, output and optionally input"
)


def instruction_format(path: str | Path) -> str | None:
    """``"jsonl"``, ``"json"`` or ``"csv"`` from the file name (``.gz`` ignored), else ``None``."""
    name = Path(path).name.lower().removesuffix(".gz")
    for fmt in INSTRUCTION_FORMATS:
        if name.endswith(f".{fmt}"):
            return fmt
    return None


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8, or an error naming the first line that is not."""
    return read_text(path, INSTRUCTIONS_HOW)


def _check_item(item: object, path: Path, where: str, row: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise DatasetFormatError(
            path, f"{where}: expected a JSON object, got {item!r:.80}", INSTRUCTIONS_HOW, row=row
        )
    out = dict(item)
    if out.get("input") is None:
        out["input"] = ""
    for field in INSTRUCTION_FIELDS:
        if field not in out:
            raise DatasetFormatError(
                path, f"{where}: missing field {field!r}", INSTRUCTIONS_HOW, row=row, column=field
            )
        if not isinstance(out[field], str):
            raise DatasetFormatError(
                path,
                f"{where}: field {field!r} must be a string, got {out[field]!r:.80}",
                INSTRUCTIONS_HOW,
                row=row,
                column=field,
            )
    return out


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    del text  # json_lines reads the file itself, naming the line of any bad byte
    return [
        _check_item(item, path, f"line {n}", n) for n, item in json_lines(path, INSTRUCTIONS_HOW)
    ]


def _read_json_array(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(
            path,
            f"line {err.lineno}: malformed JSON ({err.msg}, column {err.colno})",
            INSTRUCTIONS_HOW,
            row=err.lineno,
        ) from None
    if not isinstance(data, list):
        raise DatasetFormatError(
            path, f"expected a JSON array, got {type(data).__name__}", INSTRUCTIONS_HOW
        )
    return [
        _check_item(item, path, f"item {number}", number)
        for number, item in enumerate(data, start=1)
    ]


def _read_csv(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise DatasetFormatError(path, "empty file: expected a header row", INSTRUCTIONS_HOW)
    if missing := [f for f in ("instruction", "output") if f not in reader.fieldnames]:
        raise DatasetFormatError(
            path,
            f"line 1: the header lacks field(s) {missing}",
            INSTRUCTIONS_HOW,
            column=missing[0],
        )
    items = []
    for number, row in enumerate(reader, start=1):
        if None in row or any(v is None for v in row.values()):
            raise DatasetFormatError(
                path,
                f"line {reader.line_num}: {len(reader.fieldnames)} fields expected, "
                "found a different number",
                INSTRUCTIONS_HOW,
                row=number,
            )
        items.append(_check_item(row, path, f"line {reader.line_num}", number))
    return items


def read_instructions(path: str | Path) -> pd.DataFrame:
    """Read Alpaca-style instruction data from a JSON Lines, JSON array or CSV file.

    Parameters
    ----------
    path
        The file (see the module docstring for the formats; ``.gz`` is decompressed).

    Returns
    -------
    pandas.DataFrame
        One row per item: ``instruction``, ``input`` ("" where missing or null), ``output``, then
        any other fields in the order they first appear.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    DatasetFormatError
        Naming the file and the line or item: bytes that are not UTF-8, malformed JSON, an item
        that is not an object, a missing field, a value that is not a string.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no instruction file at {path}")
    text = _read_text(path)
    fmt = instruction_format(path)
    if fmt is None:
        first = text.lstrip()[:1]
        fmt = "json" if first == "[" else "jsonl" if first == "{" else "csv"
    reader = {"jsonl": _read_jsonl, "json": _read_json_array, "csv": _read_csv}[fmt]
    items = reader(path, text)
    frame = pd.DataFrame.from_records(items) if items else pd.DataFrame()
    extras = [c for c in frame.columns if c not in INSTRUCTION_FIELDS]
    return frame.reindex(columns=[*INSTRUCTION_FIELDS, *extras])


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def write_instructions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write instruction data in the format the file name says (``.jsonl``, ``.json``, ``.csv``).

    Parameters
    ----------
    frame
        Needs ``instruction`` and ``output`` (``input`` is written as "" where missing); other
        columns are written too.
    path
        Target file; a trailing ``.gz`` compresses it. Replaced atomically (a temporary file beside
        it, renamed), so a failed write leaves the old file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        An unknown extension, or a missing ``instruction`` / ``output`` column.
    """
    path = Path(path)
    fmt = instruction_format(path)
    if fmt is None:
        raise ValueError(f"{path}: the name must end in .jsonl, .json or .csv (optionally + .gz)")
    if missing := [c for c in ("instruction", "output") if c not in frame.columns]:
        raise ValueError(f"cannot write {path}: missing column(s) {missing}")
    frame = frame.copy()
    if "input" not in frame.columns:
        frame["input"] = ""
    extras = [c for c in frame.columns if c not in INSTRUCTION_FIELDS]
    frame = frame[[*INSTRUCTION_FIELDS, *extras]]
    if fmt == "csv":
        text = frame.to_csv(index=False)
    else:
        records = frame.to_dict(orient="records")
        if fmt == "jsonl":
            text = "".join(
                json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records
            )
        else:
            text = json.dumps(records, ensure_ascii=False, indent=2, default=_json_default) + "\n"
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
