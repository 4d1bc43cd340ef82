"""Turn a data source into the rows each training stage needs, checking the columns first.

A source (``SRC``) is what ``--data`` names everywhere in crowdtune: a dataset of the data home
(``@hh-rlhf``, ``@car``, ...), an arena CSV, a crowdtune JSONL of comparisons (the feedback
server's ``jsonl`` export), or a JSONL of ready-made TRL rows (its ``trl`` export, or any file
with TRL's column names). Comparisons become TRL preference rows with
:func:`crowdtune.datasets.comparisons.trl_rows` (single-turn: strings; multi-turn:
conversational message lists), ties dropped and counted.

What each stage reads (:data:`STAGE_COLUMNS`):

- ``sft``: ``prompt`` + ``completion`` (TRL's prompt-completion format); preference rows give
  ``prompt`` + ``chosen`` as the completion.
- ``reward`` and ``dpo``: ``prompt``, ``chosen``, ``rejected``; a row with ``tie: true`` is dropped.
- ``rl``: ``prompt`` (each distinct prompt once).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crowdtune.datasets.comparisons import trl_rows
from crowdtune.datasets.registry import load_comparisons
from crowdtune.records import Verdict

__all__ = [
    "STAGES",
    "STAGE_COLUMNS",
    "StageData",
    "StageDataError",
    "split_rows",
    "stage_rows",
]

#: The training stages, in pipeline order.
STAGES = ("sft", "reward", "dpo", "rl")

#: Columns each stage needs (SFT also takes ``chosen`` in place of ``completion``).
STAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "completion"),
    "reward": ("prompt", "chosen", "rejected"),
    "dpo": ("prompt", "chosen", "rejected"),
    "rl": ("prompt",),
}


class StageDataError(ValueError):
    """The data lacks what a stage needs; the message names the source and expected columns."""


@dataclass
class StageData:
    """A stage's rows and how many were read, dropped as ties, or dropped as duplicates."""

    rows: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)


def _is_json_lines(src: str) -> bool:
    return not src.startswith("@") and Path(src).name.endswith((".jsonl", ".jsonl.gz"))


def _first_object(path: Path) -> dict[str, Any] | None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    return None  # let the comparison reader report the line precisely
                return value if isinstance(value, dict) else None
    return None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """A JSONL of TRL rows, each line a JSON object (blank lines skipped)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageDataError(f"{path}, line {number}: not JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise StageDataError(f"{path}, line {number}: expected a JSON object")
            rows.append(value)
    return rows


def _expected(stage: str) -> str:
    columns = ", ".join(f"`{c}`" for c in STAGE_COLUMNS[stage])
    extra = " (or `chosen` in place of `completion`)" if stage == "sft" else ""
    return (
        f"the {stage} stage expects the columns {columns}{extra}, or comparisons (an arena CSV, "
        "a crowdtune JSONL with `verdict`, or an @dataset)"
    )


def stage_rows(src: str, stage: str, seed: int = 0) -> StageData:
    """The rows of ``src`` in the format of ``stage`` (see the module docs).

    Parameters
    ----------
    src
        ``@<dataset>``, an arena CSV, a comparison JSONL or a JSONL of TRL rows.
    stage
        One of :data:`STAGES`.
    seed
        Seed of the A/B order of the @datasets that randomise it (no effect on chosen/rejected).

    Returns
    -------
    StageData
        Rows ready for TRL, and counts ``read``, ``ties_dropped``, ``duplicates_dropped``, ``rows``.

    Raises
    ------
    StageDataError
        The rows lack a column the stage needs (the message names the expected ones), or no
        rows are left.
    ValueError, FileNotFoundError
        From the comparison loaders: an unknown dataset or file type, a missing or bad file.
    """

    if stage not in STAGE_COLUMNS:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    counts = {"read": 0, "ties_dropped": 0, "duplicates_dropped": 0}
    first = (
        _first_object(Path(src).expanduser())
        if _is_json_lines(src) and Path(src).expanduser().is_file()
        else None
    )
    if first is not None and "verdict" not in first:
        rows = _read_rows(Path(src).expanduser())
        counts["read"] = len(rows)
        if any("tie" in r for r in rows):  # a `trl --ties keep` export
            kept = [r for r in rows if not r.get("tie")]
            counts["ties_dropped"] = len(rows) - len(kept)
            rows = [{k: v for k, v in r.items() if k != "tie"} for r in kept]
    else:
        comparisons = load_comparisons(src, seed=seed)
        counts["read"] = len(comparisons)
        counts["ties_dropped"] = sum(c.verdict is Verdict.TIE for c in comparisons)
        rows = trl_rows(comparisons, ties="drop")
    rows = _reshape(rows, stage, src)
    if stage == "rl":
        seen: set[str] = set()
        unique = []
        for row in rows:
            key = json.dumps(row["prompt"], sort_keys=True)
            if key not in seen:
                seen.add(key)
                unique.append(row)
        counts["duplicates_dropped"] = len(rows) - len(unique)
        rows = unique
    if not rows:
        raise StageDataError(f"--data {src}: no rows left for the {stage} stage ({counts})")
    counts["rows"] = len(rows)
    return StageData(rows, counts)


def _reshape(rows: list[dict[str, Any]], stage: str, src: str) -> list[dict[str, Any]]:
    if not rows:
        return rows
    columns = set(rows[0])
    needed = list(STAGE_COLUMNS[stage])
    if stage == "sft" and "completion" not in columns and "chosen" in columns:
        needed = ["prompt", "chosen"]
    for number, row in enumerate(rows, start=1):
        if missing := [c for c in needed if c not in row]:
            where = "" if number == 1 else f" (row {number})"
            raise StageDataError(
                f"--data {src}{where}: missing column(s) {', '.join(missing)}; {_expected(stage)}; "
                f"the data has {', '.join(sorted(row)) or 'no columns'}"
            )
    if stage == "sft":
        answer = needed[1]
        return [{"prompt": r["prompt"], "completion": r[answer]} for r in rows]
    return [{c: r[c] for c in needed} for r in rows]


def split_rows(
    rows: Sequence[dict[str, Any]], eval_share: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle ``rows`` with ``seed`` and hold out ``eval_share`` of them (at least one, when
    the share is positive and there are two rows or more; the rest trains).

    Examples
    --------
    >>> train, held_out = split_rows([{"prompt": str(i)} for i in range(10)], 0.2)
    >>> len(train), len(held_out)
    (8, 2)
    """
    if not 0 <= eval_share < 1:
        raise ValueError(f"eval_share must be in [0, 1), got {eval_share}")
    order = np.random.default_rng(seed).permutation(len(rows))
    n_eval = 0 if eval_share == 0 or len(rows) < 2 else max(1, round(eval_share * len(rows)))
    held_out = [rows[i] for i in order[:n_eval]]
    train = [rows[i] for i in order[n_eval:]]
    return train, held_out
