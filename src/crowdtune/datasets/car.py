"""CaR's expert-revision pairs as the published instruction quality scorer (IQS) read them.

CaR (Ge et al., EMNLP 2024) trained and tested its IQS on
``<data home>/car-expert-revised/expert-revised/APE_score_{train,valid,test}.csv(.gz)``: two
columns, ``src`` = ``"Instruction: <instruction> Response: <response>"`` and ``score`` (0 = the
original Alpaca item, 1 = the expert revision), the two versions of an item on adjacent rows
(0 first, then 1). :func:`load_car_pairs` turns those rows into one pair per item: 2,032 (train),
254 (valid) and 254 (test). The published IQS reaches 84.25% pairwise accuracy (214/254) on the
test pairs.

The original items (score 0, and only they) are stored JSON-escaped: a literal backslash-n for
every newline, ``\\u2019`` for a curly quote, ``\\"`` for a quote. Left as they are, the escapes
alone would give the worse side away (no revision has a literal ``\\n``, a third of the originals
do), so they are decoded as :func:`crowdtune.datasets.preference_sets.load_car` decodes the comet
files. :func:`escape_statistics` counts what is left on each side.

:func:`item_text` writes any Alpaca-style item (instruction, optional input, output) in the
format the scorers read, so a scorer trained here scores other instruction data the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import pandas as pd

from crowdtune.datasets.home import (
    DatasetFormatError,
    dataset_dir,
    how_to_get_from_github,
    require_file,
)
from crowdtune.datasets.preference_sets import CAR_SPLITS, _unescape
from crowdtune.datasets.textfile import read_csv_strings
from crowdtune.validation import check_choice

__all__ = [
    "CAR_PAIR_COLUMNS",
    "CAR_PAIR_COUNTS",
    "escape_statistics",
    "item_text",
    "load_car_pairs",
    "split_item_text",
]

#: Pairs per split of the expert-revised files.
CAR_PAIR_COUNTS = {"train": 2032, "valid": 254, "test": 254}

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


def _decode_original(text: str) -> str:
    """An original item with its JSON escapes decoded.

    Most cells are a JSON string body and decode with :func:`json.loads` (as ``load_car`` does);
    two train cells were cut inside an escape (``\\"power\\ Response: ...``), which JSON rejects,
    so those are decoded escape by escape, dropping a lone backslash.
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
    folder = dataset_dir("car-expert-revised") / "expert-revised"
    name = f"APE_score_{split}.csv"
    how = how_to_get_from_github("IronBeliever/CaR", f"Ranking/data/expert-revised/{name}", folder)
    path = require_file(folder, name, f"{folder}/{name}.gz with columns src, score", how)
    frame = read_csv_strings(path, ("src", "score"), how)
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


def car_items(include_selection: bool = True) -> pd.DataFrame:
    """Every CaR instruction item as Alpaca-style rows: both sides of each expert pair (train,
    valid, test: 5,080 items) and, optionally, CaR's published selection (1,013 Alpaca items).

    Columns ``instruction``, ``input`` (always empty for the pairs, whose input is part of the
    instruction), ``output`` and ``source`` (``car-<split>-better|worse`` or ``car-selection``).
    """
    from crowdtune.datasets.instructions import load_car_selection

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
