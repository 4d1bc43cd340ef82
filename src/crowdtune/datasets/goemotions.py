"""GoEmotions (Demszky et al., ACL 2020): Reddit comments labelled with 27 emotions plus neutral.

Reads the rater-agreement splits from ``<data home>/goemotions/`` (see its ``SOURCE.md``):
``{train,dev,test}.tsv(.gz)`` have no header and three tab-separated columns (text, comma-separated
0-based label ids, Reddit comment id); ``emotions.txt`` names the 28 labels, one a line, in id
order. Lines are split on tabs by hand: a few texts hold doubled double-quotes that a CSV reader
would treat as quoting. :func:`goemotions_texts` gives a split's comments as plain texts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from crowdtune.datasets.home import DatasetFormatError, dataset_dir, require_file
from crowdtune.datasets.textfile import read_text
from crowdtune.validation import check_choice

#: Folder of the dataset in the data home.
GOEMOTIONS_DIRNAME = "goemotions"
GOEMOTIONS_SPLITS = ("train", "dev", "test")
#: The 28 labels in id order (``emotions.txt``); ``neutral`` is the last.
GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride",
    "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)  # fmt: skip

_EXPECTED = (
    "{train,dev,test}.tsv(.gz) (no header; tab-separated text, comma-separated label ids, "
    "comment id) and emotions.txt (28 label names, one a line)"
)


def _how(folder: Path) -> str:
    return (
        "download goemotions/data/{train,dev,test}.tsv and goemotions/data/emotions.txt from "
        f"https://github.com/google-research/google-research and put them, gzipped or not, into "
        f"{folder}/ (set CROWDTUNE_DATA to use another data home)"
    )


@dataclasses.dataclass(frozen=True)
class GoEmotionsSplit:
    """One split of GoEmotions.

    Attributes
    ----------
    texts
        The comments, in file order.
    labels
        ``(n, 28)`` multi-hot matrix (uint8), columns in :attr:`label_names` order.
    label_names
        The 28 label names, in id order.
    ids
        The Reddit comment ids.
    """

    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def load_goemotions_labels(home: Path | None = None) -> tuple[str, ...]:
    """The 28 label names of ``emotions.txt``, in id order.

    Raises
    ------
    DatasetMissingError
        ``emotions.txt`` is not in ``<data home>/goemotions/``.
    DatasetFormatError
        It does not hold 28 distinct non-blank names.
    """
    folder = dataset_dir(GOEMOTIONS_DIRNAME, home)
    path = require_file(folder, "emotions.txt", _EXPECTED, _how(folder))
    names = tuple(line.strip() for line in read_text(path, _how(folder)).splitlines())
    names = tuple(name for name in names if name)
    if len(names) != len(GOEMOTIONS_LABELS) or len(set(names)) != len(names):
        raise DatasetFormatError(
            path, f"expected {len(GOEMOTIONS_LABELS)} distinct label names, found {len(names)}",
            _how(folder),
        )  # fmt: skip
    return names


def load_goemotions(split: str = "train", home: Path | None = None) -> GoEmotionsSplit:
    """Read one GoEmotions split into texts, a multi-hot label matrix and the label names.

    Parameters
    ----------
    split
        ``"train"`` (43,410 rows), ``"dev"`` (5,426) or ``"test"`` (5,427).
    home
        Data home to use instead of ``$CROWDTUNE_DATA``.

    Returns
    -------
    GoEmotionsSplit

    Raises
    ------
    DatasetMissingError
        The split or ``emotions.txt`` is not in ``<data home>/goemotions/``.
    DatasetFormatError
        A line does not have 3 tab-separated columns, a label id is not an integer in
        ``[0, 28)``, or a line has no label; the message names the file and line.
    """
    check_choice(split, GOEMOTIONS_SPLITS, "GoEmotions split")
    folder = dataset_dir(GOEMOTIONS_DIRNAME, home)
    names = load_goemotions_labels(home)
    path = require_file(folder, f"{split}.tsv", _EXPECTED, _how(folder))
    how = _how(folder)
    texts: list[str] = []
    ids: list[str] = []
    rows: list[list[int]] = []
    for number, line in enumerate(read_text(path, how).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DatasetFormatError(
                path, f"line {number}: expected 3 tab-separated columns (text, label ids, id), "
                f"found {len(fields)}", how, row=number,
            )  # fmt: skip
        text, label_field, comment_id = fields
        try:
            label_ids = [int(part) for part in label_field.split(",")]
        except ValueError:
            label_ids = [-1]
        if any(not 0 <= i < len(names) for i in label_ids):
            raise DatasetFormatError(
                path, f"line {number}: expected comma-separated label ids in [0, {len(names)}), "
                f"found {label_field!r:.80}", how, row=number, column="labels",
            )  # fmt: skip
        texts.append(text)
        ids.append(comment_id)
        rows.append(label_ids)
    labels = np.zeros((len(rows), len(names)), dtype=np.uint8)
    for row, label_ids in enumerate(rows):
        labels[row, label_ids] = 1
    return GoEmotionsSplit(texts=texts, labels=labels, label_names=names, ids=ids)


def goemotions_texts(split: str = "train", home: Path | None = None) -> pd.DataFrame:
    """One split's comments as plain texts: columns ``id`` (the Reddit comment id) and ``text``."""
    data = load_goemotions(split, home)
    return pd.DataFrame({"id": data.ids, "text": data.texts})
