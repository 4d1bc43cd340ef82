"""PandaLM's human-annotated test set: 999 instruction pairs, 3 annotators, labels with ties.

Reads ``<data home>/pandalm-testset/testset-v1.json(.gz)`` (see the folder's ``SOURCE.md`` for
provenance and licence). :func:`load_pandalm` opens the file, :func:`parse_pandalm` turns its
records into :class:`~crowdtune.records.Comparison` records.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections import Counter
from pathlib import Path

from crowdtune.datasets.home import (
    DatasetFormatError,
    dataset_dir,
    how_to_get_from_github,
    require_file,
)
from crowdtune.datasets.textfile import expect_string
from crowdtune.records import Comparison, Verdict

__all__ = ["PANDALM_DIRNAME", "load_pandalm", "parse_pandalm"]

#: Folder of the dataset in the data home.
PANDALM_DIRNAME = "pandalm-testset"

_LABELS = {0: Verdict.TIE, 1: Verdict.A, 2: Verdict.B}
_ANNOTATORS = ("annotator1", "annotator2", "annotator3")


def load_pandalm(annotators: bool = False) -> list[Comparison]:
    """The PandaLM human-annotated test set (999 pairs, 3 annotators, labels with ties).

    Reads ``<data home>/pandalm-testset/testset-v1.json(.gz)``. The prompt is the instruction,
    followed by ``"\\n\\n"`` and the input when the input is not blank. Labels are 0 = tie,
    1 = response1 (A) better, 2 = response2 (B) better. The models are unknown (``cmp_key``
    lists the pair alphabetically, not in response order), so ``model_a``/``model_b`` are None.
    The sides are not reordered: the file's order is already unbiased (422 A, 472 B). Six
    responses are the JSON boolean ``true`` (a model answered "True" and the authors' pipeline
    parsed it); they are read as the text ``"True"``.

    Parameters
    ----------
    annotators
        False (default): one comparison per row with the majority label of the three
        annotators, id ``pandalm-<idx>``, no annotator. True: each annotator's label is its own
        comparison, id ``pandalm-<idx>-annotator<k>``, annotator ``"annotator<k>"``.

    Returns
    -------
    list of Comparison
        999 majority votes (105 ties, 422 A, 472 B), or 2,997 annotator votes; source
        ``"pandalm"``.

    Raises
    ------
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        The file is not a JSON array of the expected objects, a label is not 0, 1 or 2, or a row
        has no majority.
    """
    folder = dataset_dir(PANDALM_DIRNAME)
    how = how_to_get_from_github("WeOpenML/PandaLM", "data/testset-v1.json", folder)
    path = require_file(
        folder, "testset-v1.json", f"{folder}/testset-v1.json.gz (a JSON array)", how
    )
    try:
        with (
            gzip.open(path, "rt", encoding="utf-8")
            if path.suffix == ".gz"
            else path.open(encoding="utf-8") as f
        ):
            records = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise DatasetFormatError(path, f"not a readable JSON file ({err})", how) from err
    return parse_pandalm(records, path, how, annotators=annotators)


def parse_pandalm(
    records: object, path: Path, how: str, annotators: bool = False
) -> list[Comparison]:
    """The comparisons of the test set's decoded JSON (see :func:`load_pandalm`).

    Parameters
    ----------
    records
        The file's JSON: a list of objects with ``idx``, ``instruction``, ``input``,
        ``response1``, ``response2`` and ``annotator1`` .. ``annotator3``.
    path, how
        The file and how to get a good copy, for the errors.
    annotators
        As in :func:`load_pandalm`.

    Raises
    ------
    DatasetFormatError
        ``records`` is not a list of the expected objects, a label is not 0, 1 or 2, or a row
        has no majority.
    """
    if not isinstance(records, list):
        raise DatasetFormatError(path, "expected a JSON array of objects", how)
    comparisons = []
    for row, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DatasetFormatError(path, "expected a JSON object", how, row=row)
        fields = {}
        for key in ("idx", "instruction", "input", "response1", "response2", *_ANNOTATORS):
            if key not in record:
                raise DatasetFormatError(path, "missing field", how, row=row, column=key)
            fields[key] = record[key]
        labels = {}
        for key in _ANNOTATORS:
            label = fields[key]
            if isinstance(label, bool) or label not in _LABELS:
                raise DatasetFormatError(
                    path, f"expected 0, 1 or 2, got {label!r}", how, row=row, column=key
                )
            labels[key] = _LABELS[label]
        # Six responses are the JSON boolean true: the model wrote "True", which the authors'
        # pipeline parsed as a boolean. They are read back as the text "True".
        texts = {
            key: expect_string(
                str(value) if isinstance(value := fields[key], bool) else value, path, how, row, key
            )
            for key in ("instruction", "input", "response1", "response2")
        }
        prompt = texts["instruction"] + (f"\n\n{texts['input']}" if texts["input"].strip() else "")
        base = Comparison(
            id=f"pandalm-{fields['idx']}",
            prompt=(prompt,),
            response_a=(texts["response1"],),
            response_b=(texts["response2"],),
            verdict=Verdict.TIE,
            source="pandalm",
        )
        if annotators:
            comparisons += [
                dataclasses.replace(base, id=f"{base.id}-{key}", verdict=verdict, annotator=key)
                for key, verdict in labels.items()
            ]
            continue
        verdict, count = Counter(labels.values()).most_common(1)[0]
        if count < 2:
            raise DatasetFormatError(
                path,
                "the three annotators disagree, there is no majority",
                how,
                row=row,
                column="annotator1",
            )
        comparisons.append(dataclasses.replace(base, verdict=verdict))
    return comparisons
