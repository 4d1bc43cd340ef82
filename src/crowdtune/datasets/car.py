"""CaR (Ge et al., EMNLP 2024): every loader of its data, and the item text its scorers read.

The data home's ``car-expert-revised/`` folder (see its ``SOURCE.md``) holds three things:

- ``expert-revised-comet/APE_{train,valid,test}.csv(.gz)``: an original Alpaca answer against its
  expert rewrite (columns ``src``, ``pos``, ``neg``). :func:`load_car` reads them as
  :class:`~crowdtune.records.Comparison` records for the preference stage (``@car``), and
  :func:`car_instructions` their instructions for the distribution analysis.
- ``expert-revised/APE_score_{train,valid,test}.csv(.gz)``: the same pairs as the published
  instruction quality scorer (IQS) was trained and tested on: two columns, ``src`` =
  ``"Instruction: <instruction> Response: <response>"`` and ``score`` (0 = the original Alpaca
  item, 1 = the expert revision), the two versions of an item on adjacent rows (0 first, then 1).
  :func:`load_car_pairs` turns those rows into one pair per item: 2,032 (train), 254 (valid) and
  254 (test). The published IQS reaches 84.25% pairwise accuracy (214/254) on the test pairs.
  :func:`load_car_revisions` gives the same pairs as :class:`~crowdtune.records.Revision`
  records (the original answer revised by the expert), ``@car`` of a revision campaign.
- ``CaR_selected_result.json(.gz)``: CaR's published selection, 1,013 Alpaca items with their IQS
  score and cluster label (:func:`load_car_selection`). :func:`car_items` pools every item.

In both pair files the original items (score 0 / ``neg``, and only they) are stored JSON-escaped:
a literal backslash-n for every newline, ``\\u2019`` for a curly quote, ``\\"`` for a quote. Left
as they are, the escapes alone would give the worse side away (no revision has a literal ``\\n``,
a third of the originals do), so they are decoded here. :func:`escape_statistics` counts what is
left on each side.

:func:`item_text` writes any Alpaca-style item (instruction, optional input, output) in the
format the scorers read, so a scorer trained here scores other instruction data the same way.

The ``load_*`` functions open the files; :func:`parse_car_comet` and :func:`parse_car_pairs` take
the rows of a file already read apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from crowdtune.datasets.home import (
    DatasetFormatError,
    dataset_dir,
    how_to_get_from_github,
    require_file,
)
from crowdtune.datasets.instructions import INSTRUCTIONS_HOW, read_instructions
from crowdtune.datasets.textfile import read_csv_strings
from crowdtune.records import Comparison, Revision, Verdict, shuffle_sides
from crowdtune.validation import check_choice

__all__ = [
    "CAR_DIRNAME",
    "CAR_EXPERT",
    "CAR_PAIR_COLUMNS",
    "CAR_PAIR_COUNTS",
    "CAR_SPLITS",
    "car_instructions",
    "car_items",
    "escape_statistics",
    "item_text",
    "load_car",
    "load_car_pairs",
    "load_car_revisions",
    "load_car_selection",
    "parse_car_comet",
    "parse_car_pairs",
    "split_item_text",
]

#: Folder of the dataset in the data home.
CAR_DIRNAME = "car-expert-revised"
#: The splits of the expert-revised pairs, in the order :func:`load_car` reads them all.
CAR_SPLITS = ("train", "valid", "test")
#: Pairs per split of the expert-revised files.
CAR_PAIR_COUNTS = {"train": 2032, "valid": 254, "test": 254}
#: The contributor of :func:`load_car_revisions`: CaR's expert annotators.
CAR_EXPERT = "car-expert"

#: Columns of :func:`load_car_pairs`.
CAR_PAIR_COLUMNS = (
    "id",
    "instruction",
    "better_instruction",
    "worse_instruction",
    "better",
    "worse",
    "better_text",
    "worse_text",
)

_INSTRUCTION, _INPUT, _RESPONSE = "Instruction: ", " Input: ", " Response: "

#: Escape sequences that would show a text was stored JSON-escaped.
_ESCAPES = {
    "backslash_n": re.compile(r"\\n"),
    "backslash_quote": re.compile(r"\\\""),
    "backslash_u": re.compile(r"\\u[0-9a-fA-F]{4}"),
    "backslash_t": re.compile(r"\\t"),
    "any_backslash": re.compile(r"\\"),
}
_JSON_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))|\\$')
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_SELECTION_FILE = "CaR_selected_result.json"


# ---------------------------------------------------------------------------------------------
# item text


def item_text(instruction: str, input: str = "", output: str = "") -> str:  # noqa: A002
    """An Alpaca-style item as the quality scorers read it.

    ``"Instruction: <instruction> Input: <input> Response: <output>"``, the ``Input:`` part left
    out when the input is empty (as in CaR's files, whose items carry no separate input). Each
    part is stripped of surrounding whitespace.

    Examples
    --------
    >>> item_text("Add the numbers.", "2, 3", "5")
    'Instruction: Add the numbers. Input: 2, 3 Response: 5'
    >>> item_text("Name a colour.", "", "Blue.")
    'Instruction: Name a colour. Response: Blue.'
    """
    instruction, input, output = (str(x).strip() for x in (instruction, input, output))
    middle = f"{_INPUT}{input}" if input else ""
    return f"{_INSTRUCTION}{instruction}{middle}{_RESPONSE}{output}"


def split_item_text(text: str) -> tuple[str, str]:
    """``(instruction part, response)`` of a text written by :func:`item_text`.

    The instruction part keeps any ``Input:`` section. A text without `` Response: `` is all
    response (with an empty instruction), so a scorer can also read bare answers.
    """
    head, found, response = text.partition(_RESPONSE)
    if not found:
        return "", text.strip()
    if head.startswith(_INSTRUCTION):
        head = head[len(_INSTRUCTION) :]
    return head.strip(), response.strip()


# ---------------------------------------------------------------------------------------------
# escapes of the original items


def _unescape(text: str) -> str:
    """A JSON string body decoded (``\\n`` to a newline, ...), or ``text`` when it is not one."""
    try:
        decoded = json.loads(f'"{text}"')
    except json.JSONDecodeError:
        return text
    return decoded if isinstance(decoded, str) else text


def _decode_original(text: str) -> str:
    """An original item with its JSON escapes decoded.

    Most cells are a JSON string body and decode with :func:`json.loads` (as the comet files'
    originals do in :func:`parse_car_comet`); two train cells were cut inside an escape
    (``\\"power\\ Response: ...``), which JSON rejects, so those are decoded escape by escape,
    dropping a lone backslash.
    """
    decoded = _unescape(text)
    if decoded != text or "\\" not in text:
        return decoded

    def replace(match: re.Match[str]) -> str:
        code, simple = match.group(1), match.group(2)
        if code is not None:
            return chr(int(code, 16))
        return "" if simple is None else _SIMPLE_ESCAPES.get(simple, simple)

    return _JSON_ESCAPE.sub(replace, text.replace("\\ ", " "))


def escape_statistics(texts: Sequence[str]) -> dict[str, float]:
    """Share of ``texts`` containing each escape sequence that would betray JSON escaping.

    Keys: ``backslash_n`` (a literal backslash-n), ``backslash_quote``, ``backslash_u`` (a
    ``\\uXXXX`` escape), ``backslash_t``, ``any_backslash``; also ``newline`` (a real newline)
    and ``non_ascii`` (any character above U+007F), which decoding turns escapes into.
    """
    n = max(len(texts), 1)
    out = {key: sum(bool(p.search(t)) for t in texts) / n for key, p in _ESCAPES.items()}
    out["newline"] = sum("\n" in t for t in texts) / n
    out["non_ascii"] = sum(any(ord(c) > 127 for c in t) for t in texts) / n
    return out


# ---------------------------------------------------------------------------------------------
# expert revisions as comparisons (comet files)


def load_car(
    split: Literal["train", "valid", "test"] | None = None, seed: int = 0
) -> list[Comparison]:
    """CaR's expert revisions: an original Alpaca answer against its expert rewrite.

    Reads ``<data home>/car-expert-revised/expert-revised-comet/APE_<split>.csv(.gz)`` with the
    columns ``src`` (``"Instruction: ..."``), ``pos`` (``"Response: <expert revision>"``) and
    ``neg`` (``"Response: <original answer>"``). The prefixes and surrounding whitespace are
    stripped; the expert revision wins. In these files the original answers (and only they) are
    stored JSON-escaped (a literal backslash-n for every newline, ``\\"`` for quotes), so they
    are unescaped here; otherwise the escapes alone would give the worse side away. The revision
    is A, then each pair is swapped with probability 1/2
    (:func:`~crowdtune.records.shuffle_sides`). ``model_a`` / ``model_b`` say which side is which
    (``"alpaca-original"`` or ``"expert-revised"``); ids are ``car-<split>-<row>`` (0-based), the
    source ``car:<split>``.

    Parameters
    ----------
    split
        One of :data:`CAR_SPLITS`, or None for all three (in the order train, valid, test).
    seed
        Seed of the A/B order.

    Returns
    -------
    list of Comparison
        2,032 (train), 254 (valid) or 254 (test) pairs, 2,540 for all; no ties.

    Raises
    ------
    ValueError
        An unknown split.
    DatasetMissingError
        A file is not in the data home.
    DatasetFormatError
        A column is missing or a cell lacks its ``Instruction: `` / ``Response: `` prefix.
    """
    if split is not None:
        check_choice(split, CAR_SPLITS, "CaR split")
    folder = dataset_dir(CAR_DIRNAME) / "expert-revised-comet"
    comparisons = []
    for name in CAR_SPLITS if split is None else (split,):
        how = how_to_get_from_github(
            "IronBeliever/CaR", f"Ranking/data/expert-revised-comet/APE_{name}.csv", folder
        )
        path = require_file(
            folder, f"APE_{name}.csv", f"{folder}/APE_{name}.csv.gz with columns src, pos, neg", how
        )
        frame = read_csv_strings(path, ("src", "pos", "neg"), how)
        comparisons += parse_car_comet(frame, name, path, how)
    return shuffle_sides(comparisons, seed)


def parse_car_comet(frame: pd.DataFrame, split: str, path: Path, how: str) -> list[Comparison]:
    """The comparisons of one comet file's rows, the expert revision as A (see :func:`load_car`).

    Parameters
    ----------
    frame
        The file's rows as strings, columns ``src``, ``pos`` and ``neg``.
    split
        The split the rows come from (for the ids and the source).
    path, how
        The file and how to get a good copy, for the errors.

    Raises
    ------
    DatasetFormatError
        A cell lacks its ``Instruction: `` / ``Response: `` prefix.
    """
    comparisons = []
    for index, record in enumerate(frame.to_dict("records")):
        text = {}
        for column, prefix in (
            ("src", "Instruction: "),
            ("pos", "Response: "),
            ("neg", "Response: "),
        ):
            if not record[column].startswith(prefix):
                raise DatasetFormatError(
                    path,
                    f"expected a cell starting with {prefix!r}",
                    how,
                    row=index + 1,
                    column=column,
                )
            text[column] = record[column][len(prefix) :].strip()
        comparisons.append(
            Comparison(
                id=f"car-{split}-{index}",
                prompt=(text["src"],),
                response_a=(text["pos"],),
                response_b=(_unescape(text["neg"]),),
                verdict=Verdict.A,
                model_a="expert-revised",
                model_b="alpaca-original",
                source=f"car:{split}",
            )
        )
    return comparisons


def car_instructions(split: Literal["train", "valid", "test"] = "test") -> pd.DataFrame:
    """The instructions of CaR's expert-revised pairs of ``split``, the prompts of :func:`load_car`.

    Returns
    -------
    DataFrame
        Columns ``id`` (``car-<split>-<row>``) and ``text`` (the revised instruction, prefix
        stripped), in file order: 254 rows for the default test split.
    """
    comparisons = load_car(split=split)
    return pd.DataFrame(
        {"id": [c.id for c in comparisons], "text": [c.prompt[0] for c in comparisons]}
    )


# ---------------------------------------------------------------------------------------------
# expert revisions as the IQS read them


def load_car_pairs(split: Literal["train", "valid", "test"] = "test") -> pd.DataFrame:
    """CaR's (original, expert-revised) pairs of one split, the revision being the better side.

    Parameters
    ----------
    split
        ``"train"`` (2,032 pairs), ``"valid"`` (254) or ``"test"`` (254).

    Returns
    -------
    DataFrame
        Columns :data:`CAR_PAIR_COLUMNS`, one row per pair in file order: ``id``
        (``car-<split>-<pair index>``), ``instruction`` (the revised instruction),
        ``better_instruction`` / ``worse_instruction`` (each side's own instruction: the experts
        sometimes rewrote it too), ``better`` / ``worse`` (the responses) and ``better_text`` /
        ``worse_text`` (each side's whole item, :func:`item_text`). Originals are unescaped.

    Raises
    ------
    ValueError
        An unknown split.
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        A column is missing, a score is not 0/1, the rows are not adjacent (0, 1) pairs, or a
        cell lacks its ``Instruction: `` / `` Response: `` parts; the message names the row
        (1-based data row, header not counted).
    """
    check_choice(split, CAR_SPLITS, "CaR split")
    folder = dataset_dir(CAR_DIRNAME) / "expert-revised"
    name = f"APE_score_{split}.csv"
    how = how_to_get_from_github("IronBeliever/CaR", f"Ranking/data/expert-revised/{name}", folder)
    path = require_file(folder, name, f"{folder}/{name}.gz with columns src, score", how)
    return parse_car_pairs(read_csv_strings(path, ("src", "score"), how), split, path, how)


def parse_car_pairs(frame: pd.DataFrame, split: str, path: Path, how: str) -> pd.DataFrame:
    """The pairs of one expert-revised file's rows (see :func:`load_car_pairs`).

    Parameters
    ----------
    frame
        The file's rows as strings, columns ``src`` and ``score``.
    split
        The split the rows come from (for the ids).
    path, how
        The file and how to get a good copy, for the errors.

    Raises
    ------
    DatasetFormatError
        A score is not 0/1, the rows are not adjacent (0, 1) pairs, or a cell lacks its
        ``Instruction: `` / `` Response: `` parts.
    """
    if len(frame) % 2:
        raise DatasetFormatError(
            path,
            f"expected adjacent (0, 1) pairs of rows, got an odd number of rows ({len(frame)}); "
            "the last row has no partner",
            how,
            row=len(frame),
            column="score",
        )
    sources, scores = frame["src"].tolist(), frame["score"].str.strip().tolist()
    rows = []
    for pair in range(len(frame) // 2):
        sides = {}
        for offset, expected in ((0, "0"), (1, "1")):
            row = 2 * pair + offset
            if scores[row] != expected:
                raise DatasetFormatError(
                    path,
                    f"expected adjacent (0, 1) pairs of rows (original, then revision): row "
                    f"{row + 1} should have score {expected}, got {scores[row]!r}",
                    how,
                    row=row + 1,
                    column="score",
                )
            # Only the originals are stored escaped; decoding a revision could corrupt a literal
            # backslash it really contains (a regex or a Windows path in an answer).
            text = _decode_original(sources[row]) if expected == "0" else sources[row]
            if not text.startswith(_INSTRUCTION) or _RESPONSE not in text:
                raise DatasetFormatError(
                    path,
                    f"expected 'Instruction: <instruction> Response: <response>', got "
                    f"{sources[row]!r:.80}",
                    how,
                    row=row + 1,
                    column="src",
                )
            sides[expected] = split_item_text(text)
        (worse_instruction, worse), (better_instruction, better) = sides["0"], sides["1"]
        rows.append(
            (
                f"car-{split}-{pair}",
                better_instruction,
                better_instruction,
                worse_instruction,
                better,
                worse,
                item_text(better_instruction, "", better),
                item_text(worse_instruction, "", worse),
            )
        )
    return pd.DataFrame(rows, columns=list(CAR_PAIR_COLUMNS))


def load_car_revisions(split: Literal["train", "valid", "test"] | None = None) -> list[Revision]:
    """CaR's expert revisions as revision records: each original Alpaca answer revised by an
    expert (:func:`load_car_pairs`).

    The prompt is the instruction as the expert left it (the prompt of :func:`load_car` too):
    the experts also rewrote about a third of the instructions, and the revised answer answers
    the rewritten one, which is what supervised fine-tuning on ``(prompt, revised)`` needs.
    ``original`` is the Alpaca answer (unescaped), ``revised`` and ``reference`` the expert's
    answer; ``contributor`` is :data:`CAR_EXPERT`, ``source`` ``car:<split>`` and the id
    ``car-<split>-<pair index>``, as in :func:`load_car_pairs`. A few experts changed only the
    instruction (6 of the 254 test pairs), so those revisions leave the answer unchanged.

    Parameters
    ----------
    split
        One of :data:`CAR_SPLITS`, or None for all three (in the order train, valid, test).

    Returns
    -------
    list of Revision
        2,032 (train), 254 (valid) or 254 (test) revisions, 2,540 for all, in file order.

    Raises
    ------
    ValueError
        An unknown split.
    DatasetMissingError, DatasetFormatError
        As :func:`load_car_pairs`.
    """
    if split is not None:
        check_choice(split, CAR_SPLITS, "CaR split")
    revisions = []
    for name in CAR_SPLITS if split is None else (split,):
        pairs = load_car_pairs(name)  # type: ignore[arg-type]
        revisions += [
            Revision(
                id=ident,
                prompt=(instruction,),
                original=worse,
                revised=better,
                contributor=CAR_EXPERT,
                source=f"car:{name}",
                reference=better,
            )
            for ident, instruction, worse, better in zip(
                pairs["id"], pairs["instruction"], pairs["worse"], pairs["better"], strict=True
            )
        ]
    return revisions


# ---------------------------------------------------------------------------------------------
# the published selection, and every item


def load_car_selection(home: Path | None = None) -> pd.DataFrame:
    """The 1,013 Alpaca items CaR published as its selection (Ge et al., EMNLP 2024).

    Reads ``car-expert-revised/CaR_selected_result.json[.gz]`` from the data home.

    Parameters
    ----------
    home
        Data home to use instead of :func:`~crowdtune.datasets.data_home`.

    Returns
    -------
    pandas.DataFrame
        ``instruction``, ``input``, ``output``, ``score`` (CaR's IQS quality score, float) and
        ``label`` (k-means cluster id, int), in the file's order.

    Raises
    ------
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        The file is malformed, or lacks ``score`` / ``label``.
    """
    folder = dataset_dir(CAR_DIRNAME, home)
    path = require_file(
        folder,
        _SELECTION_FILE,
        f"{CAR_DIRNAME}/{_SELECTION_FILE}[.gz]: a JSON array of 1,013 Alpaca items with score "
        "and label",
        how_to_get_from_github("IronBeliever/CaR", f"data/{_SELECTION_FILE}", folder),
    )
    frame = read_instructions(path)
    if missing := [c for c in ("score", "label") if c not in frame.columns]:
        raise DatasetFormatError(
            path, f"missing field(s) {missing}", INSTRUCTIONS_HOW, column=missing[0]
        )
    try:
        frame["score"] = frame["score"].astype(float)
        frame["label"] = frame["label"].astype(int)
    except (TypeError, ValueError) as err:
        raise DatasetFormatError(
            path, f"score / label not numeric ({err})", INSTRUCTIONS_HOW
        ) from err
    return frame


def car_items(include_selection: bool = True) -> pd.DataFrame:
    """Every CaR instruction item as Alpaca-style rows: both sides of each expert pair (train,
    valid, test: 5,080 items) and, optionally, CaR's published selection (1,013 Alpaca items).

    Columns ``instruction``, ``input`` (always empty for the pairs, whose input is part of the
    instruction), ``output`` and ``source`` (``car-<split>-better|worse`` or ``car-selection``).
    """
    parts = []
    for split in ("train", "valid", "test"):
        pairs = load_car_pairs(split)
        for side in ("worse", "better"):
            parts.append(
                pd.DataFrame(
                    {
                        "instruction": pairs[f"{side}_instruction"],
                        "input": "",
                        "output": pairs[side],
                        "source": f"car-{split}-{side}",
                    }
                )
            )
    if include_selection:
        selection = load_car_selection()[["instruction", "input", "output"]]
        parts.append(selection.assign(source="car-selection"))
    return pd.concat(parts, ignore_index=True)
