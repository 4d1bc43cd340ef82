"""Anthropic's HH-RLHF (Bai et al., 2022): chosen against rejected dialogues, no ties.

Reads ``<data home>/hh-rlhf/<subset>/<split>.jsonl(.gz)``, the files of the
``anthropics/hh-rlhf`` repository (see the folder's ``SOURCE.md`` for provenance and licence).
:func:`load_hh_rlhf` opens the files and randomises the sides, :func:`parse_hh_rlhf` turns one
file's lines into :class:`~crowdtune.records.Comparison` records, :func:`parse_hh_transcript`
splits one transcript into turns, and :func:`hh_rlhf_texts` gives the prompts (or the chosen
replies) as plain texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pandas as pd

from crowdtune.datasets.home import DatasetFormatError, dataset_dir, require_file
from crowdtune.datasets.textfile import expect_string, json_lines
from crowdtune.records import Comparison, Verdict, shuffle_sides
from crowdtune.validation import check_choice

__all__ = [
    "HH_RLHF_DIRNAME",
    "HH_RLHF_SPLITS",
    "HH_RLHF_SUBSETS",
    "hh_rlhf_texts",
    "load_hh_rlhf",
    "parse_hh_rlhf",
    "parse_hh_transcript",
]

#: Folder of the dataset in the data home.
HH_RLHF_DIRNAME = "hh-rlhf"
HH_RLHF_SUBSETS = ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")
HH_RLHF_SPLITS = ("train", "test")

_TURN = re.compile(r"(\n\nHuman: |\n\nAssistant: )")
_ASSISTANT = "\n\nAssistant: "


def parse_hh_transcript(text: str) -> list[tuple[str, str]]:
    """Split an HH-RLHF transcript (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) into turns.

    Parameters
    ----------
    text
        A transcript that starts with ``"\\n\\nHuman: "``.

    Returns
    -------
    list of (role, content)
        Roles ``"Human"`` and ``"Assistant"``, alternating. A few transcripts have a marker
        inside a reply (two ``Assistant`` turns in a row); such a turn is kept whole, marker and
        all, so that no text is lost or reassigned.

    Raises
    ------
    ValueError
        The text does not start with a Human turn.
    """
    parts = _TURN.split(text)
    if parts[0] or len(parts) < 3 or parts[1] != "\n\nHuman: ":
        raise ValueError(f"a transcript must start with '\\n\\nHuman: ', got {text[:40]!r}")
    turns: list[tuple[str, str]] = []
    for marker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = marker.strip().rstrip(":")
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + marker + content)
        else:
            turns.append((role, content))
    return turns


def _common_prefix_length(a: str, b: str) -> int:
    # Binary search on slice equality: string comparison runs in C, a character loop would not.
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _pair(chosen: str, rejected: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
    """(human turns, shared assistant turns, chosen reply, rejected reply) of one HH-RLHF pair."""
    # The dialogue is the longest common prefix of the two transcripts, cut at its last
    # assistant marker that follows a human turn; after that marker comes each side's final reply
    # (which may itself contain markers, so the cut is not simply the last marker).
    common = _common_prefix_length(chosen, rejected)
    markers = [m for m in _TURN.finditer(chosen) if m.end() <= common]
    cuts = [
        m.start()
        for previous, m in zip(markers, markers[1:], strict=False)
        if previous.group() != _ASSISTANT and m.group() == _ASSISTANT
    ]
    if not cuts:
        raise ValueError("the transcripts share no human turn followed by an assistant reply")
    cut = cuts[-1]
    start = cut + len(_ASSISTANT)
    turns = parse_hh_transcript(chosen[:cut])
    humans = tuple(content for role, content in turns if role == "Human")
    assistants = tuple(content for role, content in turns if role == "Assistant")
    return humans, assistants, chosen[start:], rejected[start:]


def load_hh_rlhf(
    subsets: Iterable[str] = ("helpful-base", "harmless-base"),
    split: Literal["train", "test"] = "test",
    seed: int = 0,
) -> list[Comparison]:
    """Anthropic's HH-RLHF chosen/rejected dialogues, as comparisons without ties.

    Reads ``<data home>/hh-rlhf/<subset>/<split>.jsonl(.gz)``, the files of the
    ``anthropics/hh-rlhf`` repository. Each line's ``chosen`` and ``rejected`` transcripts share
    the dialogue up to the final assistant reply: the prompt holds the human turns, each response
    the shared assistant turns followed by its own final reply, so prompt and responses have as
    many turns. The chosen side starts as A; each pair is then swapped with probability 1/2
    (:func:`~crowdtune.records.shuffle_sides`). Ids are ``hh-rlhf-<subset>-<split>-<line>``
    (0-based), the source ``hh-rlhf:<subset>``; there are no annotator or model names.

    Parameters
    ----------
    subsets
        Folders of the repository to read, of :data:`HH_RLHF_SUBSETS`.
    split
        ``"test"`` or ``"train"`` (the shared data home holds the test splits only).
    seed
        Seed of the A/B order.

    Returns
    -------
    list of Comparison
        The pairs of every subset, in order (4,666 for the two default test splits).

    Raises
    ------
    ValueError
        An unknown subset or split.
    DatasetMissingError
        A file is not in the data home.
    DatasetFormatError
        A line lacks ``chosen`` or ``rejected`` or holds a transcript that does not parse.
    """
    subsets = tuple(subsets)
    for subset in subsets:
        check_choice(subset, HH_RLHF_SUBSETS, "HH-RLHF subset")
    check_choice(split, HH_RLHF_SPLITS, "HH-RLHF split")
    comparisons = []
    for subset in subsets:
        folder = dataset_dir(HH_RLHF_DIRNAME) / subset
        how = (
            f"download https://github.com/anthropics/hh-rlhf/raw/master/{subset}/{split}.jsonl.gz "
            f"(a Git LFS file of the anthropics/hh-rlhf repository) into {folder}/"
        )
        path = require_file(
            folder,
            f"{split}.jsonl",
            f"{folder}/{split}.jsonl.gz (JSON Lines, chosen/rejected)",
            how,
        )
        comparisons += parse_hh_rlhf(json_lines(path, how), subset, split, path, how)
    return shuffle_sides(comparisons, seed)


def parse_hh_rlhf(
    lines: Iterable[tuple[int, dict[str, object]]], subset: str, split: str, path: Path, how: str
) -> list[Comparison]:
    """The pairs of one file's lines, the chosen side as A (see :func:`load_hh_rlhf`).

    Parameters
    ----------
    lines
        ``(1-based line number, object)`` for each line, as
        :func:`~crowdtune.datasets.textfile.json_lines` reads them.
    subset, split
        Where the lines come from (for the ids and the source).
    path, how
        The file and how to get a good copy, for the errors.

    Raises
    ------
    DatasetFormatError
        A line lacks ``chosen`` or ``rejected`` or holds a transcript that does not parse.
    """
    comparisons = []
    for index, (row, data) in enumerate(lines):
        chosen = expect_string(data.get("chosen"), path, how, row, "chosen")
        rejected = expect_string(data.get("rejected"), path, how, row, "rejected")
        try:
            humans, shared, chosen_reply, rejected_reply = _pair(chosen, rejected)
        except ValueError as err:
            raise DatasetFormatError(path, str(err), how, row=row, column="chosen") from None
        comparisons.append(
            Comparison(
                id=f"hh-rlhf-{subset}-{split}-{index}",
                prompt=humans,
                response_a=(*shared, chosen_reply),
                response_b=(*shared, rejected_reply),
                verdict=Verdict.A,
                source=f"hh-rlhf:{subset}",
            )
        )
    return comparisons


def hh_rlhf_texts(
    subsets: Iterable[str] = ("helpful-base", "harmless-base"), responses: bool = False
) -> pd.DataFrame:
    """The first human turn of each test dialogue (the prompts), or the chosen final replies.

    Returns
    -------
    DataFrame
        Columns ``id`` (as in :func:`load_hh_rlhf`) and ``text``, the subsets in order.
    """
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
