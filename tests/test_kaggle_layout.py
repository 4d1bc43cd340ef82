"""Files in the exact layouts of the Kaggle LMSYS arena data: ``train.csv`` (with the winner
columns) and ``test.csv`` (without), read and predicted on end to end.

The cells are what Kaggle's files hold: JSON lists of turns written with ``ensure_ascii`` (so
non-ASCII text and emoji arrive as ``\\uXXXX`` escapes), ``null`` entries, several turns, and now
and then half an emoji's surrogate pair (``"\\ud83d"``), which the readers keep as its escape text.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.datasets import (
    DatasetFormatError,
    DatasetRepairWarning,
    load_pairs,
    read_arena_csv,
    read_arena_pairs,
)
from crowdtune.datasets.comparisons import PAIR_FRAME_COLUMNS
from crowdtune.records import comparisons_frame

TRAIN_HEADER = [
    "id", "model_a", "model_b", "prompt", "response_a", "response_b",
    "winner_model_a", "winner_model_b", "winner_tie",
]  # fmt: skip
TEST_HEADER = ["id", "prompt", "response_a", "response_b"]
#: A cell as Kaggle's train.csv has a few: a lone high surrogate escape (half of an emoji).
LONE_SURROGATE = '["Sure! \\ud83d", null]'
SUBMISSION_COLUMNS = ["id", "winner_model_a", "winner_model_b", "winner_tie"]

runner = CliRunner()


def turns(*texts: str | None) -> str:
    """A turn cell as Kaggle writes it (Python's json.dumps: ASCII with escapes)."""
    return json.dumps(list(texts))


def pair(k: int) -> tuple[str, str, str]:
    """Prompt and responses of pair ``k``: multi-turn, non-ASCII, emoji, null entries, and a
    length difference that says who wins."""
    size = k % 35
    if k % 3 == 0:
        return turns("Wie geht's? 😀", "Und dann?"), turns("Gut " * size, None), turns("Ok", "日本")
    return turns(f"Question {k}: ¿qué?"), turns("a" * (5 + size)), turns("b" * (40 - size), None)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def train_file(path: Path, n: int = 30, extra: list[list[str]] | None = None) -> Path:
    rows = []
    for k in range(n):
        winners = ["0", "0", "0"]
        winners[k % 3] = "1"
        rows.append([str(30192 + k), "gpt-4-0613", "claude-2.1", *pair(k), *winners])
    return write_csv(path, TRAIN_HEADER, rows + (extra or []))


def kaggle_test_file(path: Path, ids: list[int], extra: list[list[str]] | None = None) -> Path:
    return write_csv(path, TEST_HEADER, [[str(i), *pair(i)] for i in ids] + (extra or []))


# ---------------------------------------------------------------------------------------------
# readers


def test_test_layout_reads_as_pairs_in_file_order(tmp_path: Path) -> None:
    path = kaggle_test_file(tmp_path / "test.csv", [136062, 211333, 1233961])
    frame = read_arena_pairs(path)
    assert list(frame.columns) == list(PAIR_FRAME_COLUMNS)
    assert list(frame["id"]) == ["136062", "211333", "1233961"]
    # 136062 = 3 * 45354: two turns, the second response a null entry read as "".
    assert frame.loc[0, "prompt"] == "Wie geht's? 😀\n\nUnd dann?"
    assert (
        frame.loc[0, "response_a"].endswith("\n\n") and frame.loc[0, "response_b"] == "Ok\n\n日本"
    )
    assert frame.loc[1, "prompt"] == "Question 211333: ¿qué?"
    assert frame[["model_a", "model_b", "annotator", "source"]].isna().all().all()
    assert load_pairs(str(path)).equals(frame)


def test_train_layout_reads_as_pairs_and_as_comparisons_alike(tmp_path: Path) -> None:
    path = train_file(tmp_path / "train.csv", n=6)
    expected = comparisons_frame(read_arena_csv(path)).drop(columns="label")
    pd.testing.assert_frame_equal(read_arena_pairs(path), expected)


def test_test_layout_is_not_labelled_data(tmp_path: Path) -> None:
    path = kaggle_test_file(tmp_path / "test.csv", [1, 2])
    with pytest.raises(DatasetFormatError, match="missing column") as err:
        read_arena_csv(path)
    assert err.value.column == "winner_model_a"
    write_csv(tmp_path / "bad.csv", ["id", "prompt", "response_a"], [["1", '["q"]', '["a"]']])
    with pytest.raises(DatasetFormatError) as err:
        read_arena_pairs(tmp_path / "bad.csv")
    assert err.value.column == "response_b"


@pytest.mark.parametrize(
    ("cell", "text", "repaired"),
    [
        (LONE_SURROGATE, ("Sure! \\ud83d", ""), True),
        ('["\\udc00 low", "pair \\ud83d\\ude00"]', ("\\udc00 low", "pair 😀"), True),
        ('["swapped \\ude00\\ud83d"]', ("swapped \\ude00\\ud83d",), True),
        ('["literal \\\\ud83d"]', ("literal \\ud83d",), False),  # an escaped backslash: text
    ],
)
def test_lone_surrogate_escape_is_kept_as_its_escape_text(
    tmp_path: Path, cell: str, text: tuple[str, ...], repaired: bool
) -> None:
    extra = [["99", "m", "n", '["q"]', cell, '["b"]', "1", "0", "0"]]
    path = train_file(tmp_path / "train.csv", n=3, extra=extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparisons = read_arena_csv(path)
    assert comparisons[-1].response_a == text
    notes = [str(w.message) for w in caught if w.category is DatasetRepairWarning]
    assert len(notes) == repaired
    assert all("data row 4, column 'response_a'" in note for note in notes)
    for chars in comparisons[-1].response_a:
        chars.encode("utf-8")  # storable and servable


def test_repair_warning_can_refuse_the_file(tmp_path: Path) -> None:
    extra = [["99", "m", "n", '["q"]', '["b"]', LONE_SURROGATE, "1", "0", "0"]]
    path = train_file(tmp_path / "train.csv", n=3, extra=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetRepairWarning)
        with pytest.raises(DatasetRepairWarning, match="data row 4, column 'response_b'"):
            read_arena_csv(path)


# ---------------------------------------------------------------------------------------------
# the command line: fit on train.csv, predict on test.csv


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_fit_on_train_predict_on_test_writes_a_submission(tmp_path: Path) -> None:
    note = [["77", "m", "n", '["q"]', LONE_SURROGATE, '["b"]', "0", "1", "0"]]
    train = train_file(tmp_path / "train.csv", extra=note)
    ids = [1233961, 136060, 211333, 5, 30192, 99999999]  # not sorted: the order must hold
    test = kaggle_test_file(
        tmp_path / "test.csv", ids, extra=[["4242", '["q"]', '["a"]', LONE_SURROGATE]]
    )
    model = tmp_path / "model"
    fit = invoke("preference", "fit", "--data", str(train), "--model", "length",
                 "--out", str(model))  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert "data row 31, column 'response_a'" in fit.output and "\\ud83d" in fit.output
    out = tmp_path / "submission.csv"
    predict = invoke("preference", "predict", "--model-dir", str(model), "--data", str(test),
                     "--out", str(out))  # fmt: skip
    assert predict.exit_code == 0, predict.output
    assert "data row 7, column 'response_b'" in predict.output
    submission = pd.read_csv(out, dtype={"id": str})
    assert list(submission.columns) == SUBMISSION_COLUMNS
    assert list(submission["id"]) == [*map(str, ids), "4242"]
    proba = submission[SUBMISSION_COLUMNS[1:]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0) & (proba < 1)).all()
    # the length model: the shorter answer of pair 5 ("a" * 10 vs "b" * 35) is less preferred
    five = submission.set_index("id").loc["5"]
    assert five["winner_model_b"] > five["winner_model_a"]


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_invalid_escape_exits_2_naming_row_and_column(tmp_path: Path, command: str) -> None:
    bad = '["broken \\x41 escape"]'
    if command == "fit":
        extra = [["9", "m", "n", '["q"]', '["a"]', bad, "1", "0", "0"]]
        path = train_file(tmp_path / "train.csv", n=3, extra=extra)
        args = ["fit", "--model", "length", "--out", str(tmp_path / "m")]
        where = "data row 4, column 'response_b'"
    else:
        path = kaggle_test_file(tmp_path / "test.csv", [1, 2], extra=[["9", bad, '["a"]', '["b"]']])
        fitted = invoke("preference", "fit", "--data", str(train_file(tmp_path / "t.csv", n=6)),
                        "--model", "length", "--out", str(tmp_path / "m"))  # fmt: skip
        assert fitted.exit_code == 0, fitted.output
        args = ["predict", "--model-dir", str(tmp_path / "m"), "--out", str(tmp_path / "p.csv")]
        where = "data row 3, column 'prompt'"
    result = invoke("preference", *args, "--data", str(path))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    assert where in " ".join(result.output.split()) and "Invalid \\escape" in result.output
