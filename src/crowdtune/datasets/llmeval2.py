"""LLMEval² (DAMO-ConvAI's WideDeep benchmark): 2,553 response pairs with human verdicts, ties.

Reads ``<data home>/llmeval2/LLMEval2_benchmark.json(.gz)`` (see the folder's ``SOURCE.md`` for
provenance and licence). :func:`load_llmeval2` opens the file, :func:`parse_llmeval2` turns its
lines into :class:`~crowdtune.records.Comparison` records.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from crowdtune.datasets.home import DatasetFormatError, dataset_dir, require_file
from crowdtune.datasets.textfile import expect_string, json_lines
from crowdtune.records import Comparison, Verdict

__all__ = ["LLMEVAL2_DIRNAME", "load_llmeval2", "parse_llmeval2"]

#: Folder of the dataset in the data home.
LLMEVAL2_DIRNAME = "llmeval2"

_LABELS = {"model1": Verdict.A, "model2": Verdict.B, "TIE": Verdict.TIE}


def load_llmeval2() -> list[Comparison]:
    """The LLMEval² benchmark: 2,553 pairs with human verdicts, ties included.

    Reads ``<data home>/llmeval2/LLMEval2_benchmark.json(.gz)``, which despite its name is JSON
    Lines with the keys ``query``, ``response1``, ``response2``, ``human`` (``model1``,
    ``model2`` or ``TIE``) and ``dataset``. The prompt is ``query`` (empty in the ``mt-bench``
    rows, whose responses hold the whole conversation). Ids are ``llmeval2-<line>`` (0-based);
    the source is ``llmeval2:<dataset>``. The file's A/B order is kept (1,050 A, 1,021 B).

    Returns
    -------
    list of Comparison
        2,553 comparisons: 1,050 A, 1,021 B, 482 ties.

    Raises
    ------
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        A line is not a JSON object with those five string fields, or a verdict is unknown.
    """
    folder = dataset_dir(LLMEVAL2_DIRNAME)
    how = (
        "the file LLMEval2_benchmark.json.zip exists only in commit 621d6e6a of "
        "https://github.com/AlibabaResearch/DAMO-ConvAI (WideDeep/evaluation_data/); unzip it and "
        f"put LLMEval2_benchmark.json, gzipped or not, into {folder}/"
    )
    path = require_file(
        folder, "LLMEval2_benchmark.json", f"{folder}/LLMEval2_benchmark.json.gz (JSON Lines)", how
    )
    return parse_llmeval2(json_lines(path, how), path, how)


def parse_llmeval2(
    lines: Iterable[tuple[int, dict[str, object]]], path: Path, how: str
) -> list[Comparison]:
    """The comparisons of the benchmark's lines (see :func:`load_llmeval2`).

    Parameters
    ----------
    lines
        ``(1-based line number, object)`` for each line, as
        :func:`~crowdtune.datasets.textfile.json_lines` reads them.
    path, how
        The file and how to get a good copy, for the errors.

    Raises
    ------
    DatasetFormatError
        An object lacks one of the five string fields, or a verdict is unknown.
    """
    comparisons = []
    for index, (row, data) in enumerate(lines):
        text = {
            key: expect_string(data.get(key), path, how, row, key)
            for key in ("query", "response1", "response2", "human", "dataset")
        }
        if text["human"] not in _LABELS:
            raise DatasetFormatError(
                path,
                f"expected model1, model2 or TIE, got {text['human']!r}",
                how,
                row=row,
                column="human",
            )
        comparisons.append(
            Comparison(
                id=f"llmeval2-{index}",
                prompt=(text["query"],),
                response_a=(text["response1"],),
                response_b=(text["response2"],),
                verdict=_LABELS[text["human"]],
                source=f"llmeval2:{text['dataset']}",
            )
        )
    return comparisons
