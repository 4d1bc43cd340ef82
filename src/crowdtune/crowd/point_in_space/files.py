"""The point-in-space experiment's files: the thin edge that writes a run to its folder and reads
a finished one back.

A run in ``out/`` has ``target.json`` (the target, its sentence and the training pool),
``samples.jsonl`` (every generated text with its seed), ``results.csv`` (one row per arm,
generation, candidate and replicate), ``results.json`` (config, prompt, target, band, summary,
seconds) and the checkpoints under ``out/models/``. :func:`record_point_in_space` runs the
experiment and writes them as it goes, so a stopped run keeps its finished replicates.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pandas as pd

from crowdtune.crowd.point_in_space.arms import PROMPT, PointInSpaceConfig
from crowdtune.crowd.point_in_space.experiment import PointInSpaceResult, run_point_in_space


class PointInSpaceFiles:
    """Writes a run into ``out`` as it goes: the :class:`~crowdtune.crowd.point_in_space.
    experiment.Recorder` of :func:`run_point_in_space`, then :meth:`results` at the end.

    Use it as a context manager: it closes ``samples.jsonl`` however the run ends.
    """

    def __init__(self, out: Path | str) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._samples: IO[str] | None = None

    def __enter__(self) -> PointInSpaceFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._samples is not None:
            self._samples.close()
            self._samples = None

    def target(self, info: dict[str, Any]) -> None:
        (self.out / "target.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        self._samples = (self.out / "samples.jsonl").open("w", encoding="utf-8")

    def sample(self, record: dict[str, Any]) -> None:
        if self._samples is None:
            raise RuntimeError("samples come after the target; target() was not called")
        self._samples.write(json.dumps(record) + "\n")

    def replicate(self, table: pd.DataFrame) -> None:
        table.to_csv(self.out / "results.csv", index=False)

    def results(self, result: PointInSpaceResult) -> dict[str, Path]:
        """Write ``results.csv`` and ``results.json`` of a finished run; their paths and the
        samples'."""
        self.close()
        paths = {
            "csv": self.out / "results.csv",
            "json": self.out / "results.json",
            "samples": self.out / "samples.jsonl",
        }
        result.table.to_csv(paths["csv"], index=False)
        payload = {
            "config": dataclasses.asdict(result.config),
            "prompt": PROMPT,
            "target": {
                k: result.target[k] for k in ("emotion", "sentence", "centre", "low", "high")
            },
            "band": result.band,
            "summary": result.summary,
            "seconds": round(result.seconds, 1),
        }
        paths["json"].write_text(
            json.dumps(payload, indent=2, default=_json) + "\n", encoding="utf-8"
        )
        return paths


def record_point_in_space(
    config: PointInSpaceConfig,
    out: Path | str,
    advance: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PointInSpaceResult:
    """Run the experiment (:func:`run_point_in_space`, checkpoints under ``out/models/``) and
    write its files into ``out/`` as it goes (see the module docstring)."""
    out = Path(out)
    with PointInSpaceFiles(out) as files:
        result = run_point_in_space(config, out / "models", advance, log, recorder=files)
        files.results(result)
    return result


def finished_run(folder: Path | str, config: PointInSpaceConfig) -> pd.DataFrame | None:
    """The results table of a run already finished in ``folder`` with exactly ``config``'s
    settings (its ``results.json`` says so), else None: a stopped sweep resumes there."""
    folder = Path(folder)
    try:
        written = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        table = pd.read_csv(folder / "results.csv")
    except (OSError, ValueError):
        return None
    expected = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON has them
    if written.get("config") != expected or "replicate" not in table:
        return None
    if table["replicate"].nunique() != config.replicates:
        return None
    return table


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
