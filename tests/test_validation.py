"""The input checks every edge shares (crowdtune.validation): text, numbers and depth in JSON."""

from __future__ import annotations

import json

import pytest

from crowdtune.validation import (
    MAX_INT,
    MAX_JSON_DEPTH,
    REPLACEMENT,
    InputError,
    check_json_value,
    check_text,
    encodable_text,
    json_depth_problem,
    loads_json,
    text_problem,
)


@pytest.mark.parametrize(
    ("document", "where", "problem"),
    [
        ('{"verdict": "a", "seconds": NaN}', ("seconds",), "NaN is not a finite number"),
        ('{"seconds": Infinity}', ("seconds",), "Infinity is not a finite number"),
        ('{"seconds": -Infinity}', ("seconds",), "-Infinity is not a finite number"),
        ('{"seconds": 1e400}', ("seconds",), "1e400 is not a finite number"),
        ('{"n": ' + "1" * 400 + "}", ("n",), "out of range"),
        ('{"n": -' + "9" * 5000 + "}", ("n",), "out of range"),  # past Python's own 4,300
        (f'{{"n": {MAX_INT + 1}}}', ("n",), "out of range"),
        ('{"reason": "\\ud800"}', ("reason",), "lone surrogate (\\ud800)"),
        ('[{"prompt": ["ok", "\\udc00 low"]}]', (0, "prompt", 1), "lone surrogate (\\udc00)"),
        ('{"reason": "a\\u0000b"}', ("reason",), "NUL character"),
        ('{"\\u0000": 1}', ("\x00",), "the key contains a NUL"),
        ("[" * 5000 + "]" * 5000, (), f"nested deeper than {MAX_JSON_DEPTH} levels"),
        ('{"a": ' * 40 + "1" + "}" * 40, (), "nested deeper"),
    ],
)
def test_loads_json_refuses_naming_where(document: str, where: tuple, problem: str) -> None:
    with pytest.raises(InputError) as err:
        loads_json(document)
    assert err.value.where == where
    assert problem in err.value.problem


@pytest.mark.parametrize(
    "document",
    [
        '{"emoji": "\\ud83d\\ude00", "plain": "😀"}',  # an escaped pair is one character
        '{"backslash": "\\\\u0000 is six characters here"}',
        '{"brackets": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        f'{{"n": {MAX_INT}, "m": {-MAX_INT}, "x": 1.5e300, "t": true, "z": null}}',
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
    ],
)
def test_loads_json_accepts_what_is_fine(document: str) -> None:
    assert loads_json(document) == json.loads(document)


def test_loads_json_reads_bytes_and_keeps_json_errors_as_they_are() -> None:
    assert loads_json('{"a": "ü"}'.encode("utf-16")) == {"a": "ü"}
    with pytest.raises(json.JSONDecodeError):
        loads_json(b'{"a": ')
    with pytest.raises(json.JSONDecodeError):
        loads_json(b'{"a": "\xff"}')


def test_a_million_brackets_never_reach_the_recursive_parser() -> None:
    document = "[" * 1_000_000 + "]" * 1_000_000
    assert json_depth_problem(document) == f"nested deeper than {MAX_JSON_DEPTH} levels"
    with pytest.raises(InputError):
        loads_json(document)


def test_check_json_value_walks_decoded_values() -> None:
    check_json_value({"a": [1, 2.5, "ok", None, True]})
    with pytest.raises(InputError) as err:
        check_json_value({"a": [1, float("inf")]}, ("body",))
    assert err.value.where == ("body", "a", 1)
    deep: list = []
    node = deep
    for _ in range(MAX_JSON_DEPTH + 1):
        node.append([])
        node = node[0]
    with pytest.raises(InputError, match="nested deeper"):
        check_json_value(deep)


def test_text_checks_and_replacement() -> None:
    assert text_problem("tab\tnewline\nü😀") is None
    with pytest.raises(ValueError, match="^model_a contains a NUL character"):
        check_text("m\x00", "model_a")
    assert encodable_text("a\ud800b\udfff") == f"a{REPLACEMENT}b{REPLACEMENT}"
    fine = "unchanged"
    assert encodable_text(fine) is fine
    assert encodable_text("a\ud800").encode("utf-8")
