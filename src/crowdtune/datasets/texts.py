"""Plain texts for the linguistic distribution analysis: a command-line ``SRC`` to one table.

:func:`load_texts` resolves a ``SRC`` to a DataFrame with the columns ``id`` and ``text`` (and
``human_score`` / ``reward_score`` where a file has them). Datasets of the data home:

- ``@goemotions`` (``:train``, the default, ``:dev`` or ``:test``): the Reddit comments of
  GoEmotions, ids the Reddit comment ids;
- ``@hh-rlhf:helpful-base`` / ``@hh-rlhf:harmless-base`` (``@hh-rlhf`` for both): the first
  human turn of each test dialogue, i.e. the prompts; ``@hh-rlhf:helpful-base:responses`` the
  chosen final assistant replies instead;
- ``@car`` (``:train``, ``:valid``, ``:test``; default ``:test``): the instructions of CaR's
  expert-revised split (the revised instruction of each pair, prefix stripped), i.e. the 254
  instructions of the expert test set by default — the prompts a curated fine-tuning set answers.

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

from crowdtune.datasets.car import CAR_SPLITS, car_instructions
from crowdtune.datasets.goemotions import GOEMOTIONS_SPLITS, load_goemotions
from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.preference_sets import HH_RLHF_SUBSETS, load_hh_rlhf
from crowdtune.datasets.textfile import json_lines, read_text
from crowdtune.records import Verdict
from crowdtune.validation import check_choice

__all__ = ["TEXT_DATASETS", "TEXT_FILE_SUFFIXES", "SCORE_COLUMNS", "load_texts"]

#: Names :func:`load_texts` accepts (as ``@name``), with a one-line description.
TEXT_DATASETS = {
    "goemotions": "GoEmotions Reddit comments (@goemotions:train (default), :dev, :test)",
    "hh-rlhf": "HH-RLHF test prompts, the first human turn (@hh-rlhf:helpful-base, "
    ":harmless-base; add :responses for the chosen final replies)",
    "car": "CaR expert-revised instructions (@car:test (default), :train, :valid)",
}
#: File suffixes :func:`load_texts` reads.
TEXT_FILE_SUFFIXES = (".txt", ".jsonl", ".csv")
#: Optional numeric columns kept from JSONL and CSV files.
SCORE_COLUMNS = ("human_score", "reward_score")

_FILE_HOW = "write UTF-8 text: .txt one text per line, .jsonl objects with a string 'text', .csv "
_FILE_HOW += "with a 'text' column"


def _goemotions(split: str) -> pd.DataFrame:
    data = load_goemotions(split)
    return pd.DataFrame({"id": data.ids, "text": data.texts})


def _hh_rlhf(subsets: tuple[str, ...], responses: bool) -> pd.DataFrame:
    ids, texts = [], []
    for comparison in load_hh_rlhf(subsets=subsets, seed=0):
        ids.append(comparison.id)
        if responses:
            chosen = (
                comparison.response_a if comparison.verdict == Verdict.A else comparison.response_b
            )
            texts.append(chosen[-1])
        else:
            texts.append(comparison.prompt[0])
    return pd.DataFrame({"id": ids, "text": texts})


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


def _read_file(path: Path) -> pd.DataFrame:
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


def load_texts(src: str) -> pd.DataFrame:
    """Load the texts a command-line ``SRC`` names (see the module docstring for the sources).

    Parameters
    ----------
    src
        ``@goemotions[:train|dev|test]``, ``@hh-rlhf[:helpful-base|harmless-base][:responses]``,
        ``@car[:train|valid|test]``, or a ``.txt``, ``.jsonl`` or ``.csv`` file.

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (str) and ``text`` (str, possibly empty), plus ``human_score`` and
        ``reward_score`` (float, NaN where missing) when a file has them.

    Raises
    ------
    ValueError
        An unknown dataset, option or file type (the message lists the known ones).
    FileNotFoundError
        The file does not exist (:class:`DatasetMissingError` for a dataset not in the data home).
    DatasetFormatError
        Bad content: non-UTF-8 bytes, invalid JSON, a missing ``text`` field, a non-numeric score
        (the message names the file and line).
    """
    if not src.startswith("@"):
        return _read_file(Path(src).expanduser())
    name, *options = src[1:].split(":")
    check_choice(f"@{name}", [f"@{known}" for known in TEXT_DATASETS], "text dataset")
    if name == "goemotions":
        if len(options) > 1:
            raise ValueError(f"@goemotions takes one option ({', '.join(GOEMOTIONS_SPLITS)})")
        split = options[0] if options else "train"
        check_choice(split, GOEMOTIONS_SPLITS, "option of @goemotions")
        return _goemotions(split)
    if name == "car":
        if len(options) > 1:
            raise ValueError(f"@car takes one option ({', '.join(CAR_SPLITS)})")
        split = options[0] if options else "test"
        check_choice(split, CAR_SPLITS, "option of @car")
        return car_instructions(split)  # type: ignore[arg-type]
    responses = bool(options) and options[-1] == "responses"
    if responses:
        options = options[:-1]
    if len(options) > 1:
        raise ValueError(f"@hh-rlhf takes a subset and/or ':responses', got {src!r}")
    subsets: tuple[str, ...] = ("helpful-base", "harmless-base")
    if options:
        check_choice(options[0], HH_RLHF_SUBSETS, "option of @hh-rlhf")
        subsets = (options[0],)
    return _hh_rlhf(subsets, responses)
