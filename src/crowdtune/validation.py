"""Checks shared by every configuration object and every edge that reads input, with error
messages that name the fix.

Two kinds of check live here, at the bottom of the layers so that any module may use them:

- :func:`check_choice`: an unknown option names the choices.
- Input that cannot break anything downstream: text that every encoder and database accepts
  (:func:`text_problem`, :func:`check_text`), and JSON parsed without surprises
  (:func:`loads_json`, :func:`check_json_value`): no NUL (PostgreSQL refuses it in text), no
  lone surrogate (UTF-8 cannot encode it, so serving it would fail), no non-finite number
  (``NaN``, ``Infinity``, or ``1e400``, which overflows to infinity), no integer outside 64 bits
  (:data:`MAX_INT`), no nesting deeper than :data:`MAX_JSON_DEPTH` (Python's parser recurses, so
  5,000 brackets would exhaust its stack). The server applies them to every request body, form
  and query string, the file readers to every cell (see ``crowdtune.server.inputs`` and
  ``crowdtune.datasets.comparisons``); :func:`encodable_text` is the other direction: text
  stored before these checks existed, made safe to serve.

A problem found in JSON is an :class:`InputError`, a ``ValueError`` whose ``where`` is the path
to the value (keys and list indices), so an API can answer with the field's location.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

#: Deepest nesting of JSON arrays and objects accepted from input. Every input format of
#: crowdtune needs 3 (a list of items, an item, a list of turns); Python's ``json`` recurses
#: once per level, so an unbounded depth is a stack overflow away.
MAX_JSON_DEPTH = 32
#: Largest integer accepted from input: a signed 64-bit integer, the widest column of any
#: database crowdtune writes to. Larger ones (a 400-digit number) are refused, never converted.
MAX_INT = 2**63 - 1
#: What replaces a character that cannot be encoded when stored text is served.
REPLACEMENT = "\ufffd"

# NUL and the surrogate code points. In a Python string decoded from UTF-8 or JSON a surrogate
# is always a lone one (json.loads joins escaped pairs into one character), and none can be
# encoded as UTF-8.
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The escapes by which a JSON text may hold a NUL or a surrogate (\u0000, \ud800 to \udfff):
# a quick filter, a hit is confirmed on the decoded values.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
# A JSON string (escapes included), and anything but a bracket: cut out to count the brackets.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INT_DIGITS = len(str(MAX_INT))


def check_choice(value: object, choices: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming ``what``, the bad value and every choice, unless it is one."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(options)}")


# ---------------------------------------------------------------------------------------------
# text


def text_problem(text: str) -> str | None:
    """What makes ``text`` unfit to store, or None: a NUL character or a lone surrogate.

    >>> text_problem("fine: ünïcode, emoji 😀, tabs\\t and newlines\\n")
    >>> text_problem("a\\x00b")
    'contains a NUL character (\\\\u0000) at position 1'
    >>> text_problem("\\ud800")
    'contains a lone surrogate (\\\\ud800) at position 0, which UTF-8 cannot encode'
    """
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    code = f"\\u{ord(found.group()):04x}"
    if found.group() == "\x00":
        return f"contains a NUL character ({code}) at position {found.start()}"
    where = f"at position {found.start()}"
    return f"contains a lone surrogate ({code}) {where}, which UTF-8 cannot encode"


def check_text(value: str, what: str) -> str:
    """``value`` unchanged if :func:`text_problem` finds nothing; else ``ValueError`` naming
    ``what``.

    >>> check_text("ok", "reason")
    'ok'
    >>> check_text("\\x00", "reason")
    Traceback (most recent call last):
    ...
    ValueError: reason contains a NUL character (\\u0000) at position 0
    """
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {problem}")
    return value


def encodable_text(text: str) -> str:
    """``text`` with every character UTF-8 cannot encode (lone surrogates) replaced by
    :data:`REPLACEMENT`, for serving text stored before :func:`check_text` guarded the input.

    >>> encodable_text("a\\ud800b") == "a\\ufffdb"
    True
    """
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


def escape_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written out as its JSON escape, the six characters
    ``\\ud83d``: the lossless repair of a JSON text that escapes half a surrogate pair (an emoji
    cut in two, as in cells of the Kaggle LMSYS arena data). Unlike :func:`encodable_text`, which
    puts U+FFFD in its place, the code point stays readable in the text.

    >>> escape_surrogates("cut \\ud83d here") == "cut \\\\ud83d here"
    True
    >>> escape_surrogates("whole 😀")
    'whole 😀'
    """
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _escape_lone_surrogates(value: Any, escaped: list[str]) -> Any:
    """``value`` (decoded JSON) with :func:`escape_surrogates` applied to every string, keys
    too; each surrogate escaped is appended to ``escaped``. Recursive, but only on values that
    :func:`json_depth_problem` let through."""
    if isinstance(value, str):
        escaped += [f"\\u{ord(found):04x}" for found in _SURROGATE.findall(value)]
        return escape_surrogates(value)
    if isinstance(value, list):
        return [_escape_lone_surrogates(item, escaped) for item in value]
    if isinstance(value, dict):
        return {
            _escape_lone_surrogates(key, escaped): _escape_lone_surrogates(item, escaped)
            for key, item in value.items()
        }
    return value


# ---------------------------------------------------------------------------------------------
# JSON


class InputError(ValueError):
    """Input refused: ``where`` is the path to the value (keys and list indices, empty for the
    whole document), ``problem`` what is wrong with it."""

    def __init__(self, where: tuple[str | int, ...], problem: str) -> None:
        shown = "".join(f"[{part!r}]" for part in where) or "the document"
        super().__init__(f"{shown}: {problem}")
        self.where, self.problem = where, problem


class _Refused:
    """What :func:`loads_json` puts where a number it refuses stood, to be found with its path."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _number_problem(value: object) -> str | None:
    if isinstance(value, _Refused):
        return value.problem
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"the integer is out of range (at most {MAX_INT} in absolute value)"
    return None


def check_json_value(value: Any, where: tuple[str | int, ...] = ()) -> None:
    """Raise :class:`InputError` for the first value in ``value`` (decoded JSON: dicts, lists,
    strings, numbers, booleans, None) that is refused: text with a :func:`text_problem` (keys
    too), a non-finite float, an integer past :data:`MAX_INT`, nesting past
    :data:`MAX_JSON_DEPTH`. ``where`` prefixes the paths of the errors.

    >>> check_json_value({"items": [{"prompt": "ok", "seconds": 2.5}]})
    >>> check_json_value({"items": [{"seconds": float("nan")}]})
    Traceback (most recent call last):
    ...
    crowdtune.validation.InputError: ['items'][0]['seconds']: nan is not a finite number
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if (problem := text_problem(node)) is not None:
                raise InputError(path, problem)
        elif isinstance(node, dict | list):
            if len(path) - len(where) >= MAX_JSON_DEPTH:
                raise InputError(path, f"nested deeper than {MAX_JSON_DEPTH} levels")
            pairs = node.items() if isinstance(node, dict) else enumerate(node)
            children = []
            for key, child in pairs:
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    raise InputError((*path, key), f"the key {problem}")
                children.append((child, (*path, key)))
            stack.extend(reversed(children))  # depth first, in document order
        elif (problem := _number_problem(node)) is not None:
            raise InputError(path, problem)


def json_depth_problem(text: str, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why a JSON text is nested too deeply to parse safely, or None; brackets inside strings
    do not count. Cheap: a text with at most ``limit`` opening brackets is not scanned at all,
    and a scan visits the brackets only (the strings are cut out by one regular expression).

    >>> json_depth_problem('[{"a": ["[[[["]}]', limit=3)
    >>> json_depth_problem("[[[[]]]]", limit=3)
    'nested deeper than 3 levels'
    """
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return f"nested deeper than {limit} levels"
    return None


def _refuse_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a finite number")


def _parse_float(literal: str) -> float | _Refused:
    value = float(literal)
    return value if math.isfinite(value) else _Refused(f"{literal} is not a finite number")


def _parse_int(literal: str) -> int | _Refused:
    # Refused by its length before int() runs: Python's own limit (4,300 digits) would raise a
    # ValueError that names no field, and converting a long number costs quadratic time.
    if len(literal.lstrip("-")) <= _INT_DIGITS and abs(value := int(literal)) <= MAX_INT:
        return value
    return _Refused(f"the integer is out of range (at most {MAX_INT} in absolute value)")


def loads_json(
    document: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, escaped: list[str] | None = None
) -> Any:
    """Parse a JSON document that came from outside, refusing what :func:`check_json_value`
    refuses, before it can reach anything else.

    Parameters
    ----------
    document
        The JSON text, or bytes in UTF-8 (or UTF-16/32, as :func:`json.loads` detects).
    max_depth
        Deepest nesting accepted; checked before parsing, so a deeper document never reaches
        the (recursive) parser.
    escaped
        None (default): a lone surrogate is refused like the rest. A list: a lone surrogate is
        kept as its escape text instead (:func:`escape_surrogates`, lossless) and its escape is
        appended to the list, so the caller can say what it repaired. A NUL is still refused.

    Raises
    ------
    json.JSONDecodeError
        Not JSON (a ``ValueError``, as from :func:`json.loads`).
    InputError
        JSON that is refused; ``where`` is the path to the refused value.

    >>> loads_json('{"seconds": 1.5, "reason": "ok"}')
    {'seconds': 1.5, 'reason': 'ok'}
    >>> loads_json('{"verdict": "a", "seconds": NaN}')
    Traceback (most recent call last):
    ...
    crowdtune.validation.InputError: ['seconds']: NaN is not a finite number
    >>> found = []
    >>> loads_json('["cut \\\\ud83d", "whole \\\\ud83d\\\\ude00"]', escaped=found)
    ['cut \\\\ud83d', 'whole 😀']
    >>> found
    ['\\\\ud83d']
    >>> loads_json("[" * 5000 + "]" * 5000)
    Traceback (most recent call last):
    ...
    crowdtune.validation.InputError: the document: nested deeper than 32 levels
    """
    if isinstance(document, bytes | bytearray):
        try:
            document = document.decode(json.detect_encoding(document))
        except UnicodeDecodeError as err:
            raise json.JSONDecodeError(f"not UTF-8 ({err.reason})", "", err.start) from None
    if (problem := json_depth_problem(document, max_depth)) is not None:
        raise InputError((), problem)
    refused: list[_Refused] = []

    def refuse(made: Any) -> Any:
        if isinstance(made, _Refused):
            refused.append(made)
        return made

    value = json.loads(
        document,
        parse_constant=lambda name: refuse(_refuse_constant(name)),
        parse_float=lambda literal: refuse(_parse_float(literal)),
        parse_int=lambda literal: refuse(_parse_int(literal)),
    )
    if escaped is not None and _SUSPECT_ESCAPE.search(document):
        value = _escape_lone_surrogates(value, escaped)
    # Walking the value finds a refused one with its path; skipped when nothing can be there.
    if refused or _SUSPECT_ESCAPE.search(document) or _BAD_CHARACTER.search(document):
        check_json_value(value)
    return value
