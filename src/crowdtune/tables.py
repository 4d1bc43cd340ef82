"""Writing results to disk: tidy tables (CSV or Parquet) and JSON summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from crowdtune.validation import check_choice, encodable_text

TABLE_FORMATS = ("csv", "parquet")


def write_table(frame: pd.DataFrame, stem: Path, table_format: str = "csv") -> Path:
    """Write ``frame`` to ``stem`` + ``.csv`` or ``.parquet`` (one value per cell, no index)."""
    check_choice(table_format, TABLE_FORMATS, "table format")
    path = stem.with_suffix(f".{table_format}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if table_format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, tuples, NaN and text made JSON-safe: NaN becomes ``None``,
    a character UTF-8 cannot encode (a lone surrogate) U+FFFD.

    >>> jsonable({"a": (float("nan"), "\\ud800")}) == {"a": [None, "\\ufffd"]}
    True
    """
    if isinstance(value, str):
        return encodable_text(value)
    if isinstance(value, dict):
        return {encodable_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON-ready dicts (numpy scalars unwrapped, NaN as ``None``)."""
    return [jsonable(row) for row in frame.to_dict("records")]


def write_json(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(obj), indent=2) + "\n", encoding="utf-8")
    return path
