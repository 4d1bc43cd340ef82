"""Files of revisions and ratings: JSON Lines, items to import, and the training exports."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from crowdtune.datasets import (
    REVISION_DATASETS,
    DatasetFormatError,
    DatasetMissingError,
    load_car_revisions,
    load_revisions,
)
from crowdtune.datasets.car import CAR_EXPERT, load_car_pairs
from crowdtune.datasets.items import (
    read_items,
    read_rating_items,
    read_revision_items,
    revision_items,
)
from crowdtune.datasets.ratings import (
    rating_csv_rows,
    rating_kto_rows,
    read_ratings_jsonl,
    write_rating_kto_jsonl,
    write_ratings_csv,
    write_ratings_jsonl,
)
from crowdtune.datasets.revisions import (
    read_revisions_jsonl,
    revision_sft_rows,
    revision_trl_rows,
    write_revision_sft_jsonl,
    write_revision_trl_jsonl,
    write_revisions_jsonl,
)
from crowdtune.records import RATING_COLUMNS, Rating, Revision


def sample_revisions() -> list[Revision]:
    """Changed and unchanged answers, multi-turn, non-ASCII, quotes and newlines."""
    return [
        Revision("item-1/ann", ("Say hi.",), "hi", "Hello there!", "ann", "proj", "Hello!"),
        Revision("item-1/bo", ("Say hi.",), "hi", " hi\n", "bo", "proj"),
        Revision("item-2/ann", ("Grüß dich", "und?"), 'He said "no"', 'He said "yes"\nthen left'),
        Revision("item-3/ann", ("Blank?",), "something", "   "),
    ]


def sample_ratings() -> list[Rating]:
    return [
        Rating("item-1/ann", ("Rate this.",), "=HYPERLINK(1)", 5, contributor="ann"),
        Rating("item-1/bo", ("Rate this.",), "=HYPERLINK(1)", 4, aspects={"safety": 7}),
        Rating("item-2/ann", ("日本語", "more"), "ok", 0.75, scale=(0, 1), source="-proj"),
        Rating("item-3/ann", ("Neg?",), "-2 points", -2, scale=(-3, 3), aspects={"clarity": -1}),
    ]


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------ JSON Lines


@pytest.mark.parametrize("name", ["revisions.jsonl", "revisions.jsonl.gz"])
def test_revisions_jsonl_round_trip(tmp_path: Path, name: str) -> None:
    path = write_revisions_jsonl(sample_revisions(), tmp_path / name)
    assert path == tmp_path / name
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()).startswith(b'{"id": "item-1/ann"')
    else:
        assert "Grüß" in path.read_text(encoding="utf-8")  # not ASCII-escaped
    assert read_revisions_jsonl(path) == sample_revisions()


@pytest.mark.parametrize("name", ["ratings.jsonl", "ratings.jsonl.gz"])
def test_ratings_jsonl_round_trip_keeps_scale_and_aspects(tmp_path: Path, name: str) -> None:
    back = read_ratings_jsonl(write_ratings_jsonl(sample_ratings(), tmp_path / name))
    assert back == sample_ratings()
    assert [r.scale for r in back] == [(1, 7), (1, 7), (0, 1), (-3, 3)]
    assert [r.aspects for r in back] == [None, {"safety": 7.0}, None, {"clarity": -1.0}]


def test_ratings_jsonl_defaults_the_scale_and_takes_integer_ids(tmp_path: Path) -> None:
    row = {"id": 3, "prompt": "p", "response": "a", "score": 7}
    path = write_lines(tmp_path / "r.jsonl", [row])
    (rating,) = read_ratings_jsonl(path)
    assert rating.id == "3" and rating.scale == (1.0, 7.0) and rating.prompt == ("p",)


BASE_REVISION = {"id": "r1", "prompt": ["p"], "original": "o", "revised": "r"}
BASE_RATING = {"id": "r1", "prompt": ["p"], "response": "a", "score": 4}


@pytest.mark.parametrize(
    ("line", "column", "problem"),
    [
        ("not json", None, "malformed JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ({**BASE_REVISION, "score": 3}, "score", "unknown field"),
        ({k: v for k, v in BASE_REVISION.items() if k != "revised"}, "revised", "missing"),
        ({**BASE_REVISION, "revised": None}, "revised", "expected a string"),
        ({**BASE_REVISION, "prompt": []}, "prompt", "non-empty list of strings"),
        ({**BASE_REVISION, "id": " "}, "id", "non-empty string"),
        ({**BASE_REVISION, "id": True}, "id", "non-empty string"),
        ({**BASE_REVISION, "contributor": 5}, "contributor", "expected a string"),
        ({**BASE_REVISION, "reference": "a\x00b"}, "reference", "NUL"),
        ({**BASE_REVISION, "id": "r0"}, "id", "id 'r0' repeats row 1"),
    ],
)  # fmt: skip
def test_revisions_reader_names_file_line_and_field(
    tmp_path: Path, line: object, column: str | None, problem: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [{**BASE_REVISION, "id": "r0"}, "", line])
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_revisions_jsonl(path)
    assert err.value.row == 3 and err.value.column == column
    assert str(path) in str(err.value) and "write_revisions_jsonl" in str(err.value)


@pytest.mark.parametrize(
    ("line", "column", "problem"),
    [
        ({**BASE_RATING, "score": 8}, "score", "the score must be a number from 1 to 7, got 8"),
        ({**BASE_RATING, "score": "4"}, "score", "got '4'"),
        ({**BASE_RATING, "score": True}, "score", "got True"),
        ('{"id": "x", "prompt": "p", "response": "a", "score": NaN}', "score", "got nan"),
        ({**BASE_RATING, "scale": [7, 1]}, "scale", "two finite numbers, lowest first"),
        ({**BASE_RATING, "score": 0.5, "scale": [0, 1], "aspects": {"tone": 2}}, "aspects",
         "aspect 'tone' must be a number from 0 to 1"),
        ({**BASE_RATING, "aspects": [1, 2]}, "aspects", "expected an object"),
        ({**BASE_RATING, "label": True}, "label", "unknown field"),
        ({k: v for k, v in BASE_RATING.items() if k != "score"}, "score", "missing"),
    ],
)  # fmt: skip
def test_ratings_reader_names_file_line_and_field(
    tmp_path: Path, line: object, column: str, problem: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [line])
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_ratings_jsonl(path)
    assert err.value.row == 1 and err.value.column == column and str(path) in str(err.value)


def test_writers_refuse_repeated_ids_and_keep_the_old_file(tmp_path: Path) -> None:
    path = write_revisions_jsonl(sample_revisions()[:1], tmp_path / "r.jsonl")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="revision id 'item-1/ann' appears more than once"):
        write_revisions_jsonl(sample_revisions()[:1] * 2, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]
    with pytest.raises(ValueError, match="rating id 'item-1/ann' appears more than once"):
        write_ratings_jsonl(sample_ratings()[:1] * 2, tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="rating id"):
        write_ratings_csv(sample_ratings()[:1] * 2, tmp_path / "a.csv")


def test_readers_of_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no revision file"):
        read_revisions_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(FileNotFoundError, match="no rating file"):
        read_ratings_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(FileNotFoundError, match="no item file"):
        read_revision_items(tmp_path / "none.csv")


# ------------------------------------------------------------------------------ items


def test_revision_items_from_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "id": ["a", ""],
            "prompt": ["Say hi, please.", "Two\nlines"],
            "response": ["hi", "ok"],
            "reference": ["Hello!", ""],
            "notes": ["ignored", "too"],
        }
    ).to_csv(csv_path, index=False)
    assert read_revision_items(csv_path) == [
        {"prompt": "Say hi, please.", "response": "hi", "id": "a", "reference": "Hello!"},
        {"prompt": "Two\nlines", "response": "ok"},
    ]
    jsonl = write_lines(
        tmp_path / "items.jsonl",
        [
            {"prompt": ["t1", "t2"], "response": "r", "id": 7, "reference": None},
            {"prompt": "p", "response": "r", "reference": "better"},
        ],
    )
    assert read_items(jsonl, "revision") == [
        {"prompt": ["t1", "t2"], "response": "r", "id": "7"},
        {"prompt": "p", "response": "r", "reference": "better"},
    ]


def test_rating_items_gold_is_a_score_or_a_range(tmp_path: Path) -> None:
    path = tmp_path / "items.csv.gz"
    pd.DataFrame(
        {"prompt": ["p1", "p2", "p3"], "response": ["a", "b", "c"], "gold": ["5", "[4, 6]", ""]}
    ).to_csv(path, index=False)
    assert read_rating_items(path) == [
        {"prompt": "p1", "response": "a", "gold": 5.0},
        {"prompt": "p2", "response": "b", "gold": [4.0, 6.0]},
        {"prompt": "p3", "response": "c"},
    ]
    jsonl = write_lines(tmp_path / "items.jsonl", [{"prompt": "p", "response": "a", "gold": 0.5}])
    assert read_rating_items(jsonl, scale=(0, 1)) == [{"prompt": "p", "response": "a", "gold": 0.5}]


@pytest.mark.parametrize(
    ("gold", "problem"),
    [
        ("9", "a gold score must be a number from 1 to 7, got 9.0"),
        ("five", "got 'five'"),
        ("[6, 4]", "low <= high"),
        ("[4, 9]", "leaves the scale 1 to 7"),
        ("[4, 5", "a range is a JSON list"),
        ("nan", "got nan"),
    ],
)
def test_rating_items_refuse_bad_gold_naming_row_and_column(
    tmp_path: Path, gold: str, problem: str
) -> None:
    path = tmp_path / "items.csv"
    pd.DataFrame({"prompt": ["p", "q"], "response": ["a", "b"], "gold": ["4", gold]}).to_csv(
        path, index=False
    )
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_rating_items(path)
    assert (err.value.row, err.value.column) == (2, "gold") and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ({"prompt": "p"}, "response", "missing field"),
        ({"prompt": "p", "response": "  "}, "response", "empty"),
        ({"prompt": ["", "x"], "response": "r"}, "prompt", "empty"),
        ({"prompt": "p", "response": "r", "refrence": "x"}, "refrence", "unknown field"),
        ({"prompt": "p", "response": "r", "gold": 5}, "gold", "unknown field"),
        ({"prompt": "p", "response": "r", "id": ""}, "id", "non-empty string"),
        ({"prompt": "p", "response": "r", "id": "first"}, "id", "'first' repeats row 1"),
        ({"prompt": "p", "response": "r\ud800"}, "response", "lone surrogate"),
    ],
)
def test_item_reader_names_row_and_field(
    tmp_path: Path, row: dict, column: str, problem: str
) -> None:
    first = {"prompt": "p", "response": "r", "id": "first"}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_revision_items(path)
    assert (err.value.row, err.value.column) == (2, column)


def test_item_reader_csv_needs_prompt_and_response_and_a_known_suffix(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("prompt,answer\np,a\n")
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) \['response'\]"):
        read_revision_items(path)
    path.write_text("prompt,response\np,\n")
    with pytest.raises(DatasetFormatError, match="empty") as err:
        read_revision_items(path)
    assert (err.value.row, err.value.column) == (1, "response")
    with pytest.raises(ValueError, match=r"accepted file names end in \.jsonl, \.jsonl\.gz"):
        read_revision_items(tmp_path / "items.txt")
    with pytest.raises(ValueError, match="unknown item kind 'pairwise'"):
        read_items(path, "pairwise")  # type: ignore[arg-type]


def test_revision_items_make_originals_the_items_and_references_theirs() -> None:
    assert revision_items(sample_revisions()[:3]) == [
        {"id": "item-1/ann", "prompt": "Say hi.", "response": "hi", "reference": "Hello!"},
        {"id": "item-1/bo", "prompt": "Say hi.", "response": "hi"},
        {"id": "item-2/ann", "prompt": ["Grüß dich", "und?"], "response": 'He said "no"'},
    ]


# ------------------------------------------------------------------------------ exports


def test_sft_rows_are_conversations_ending_in_the_revision() -> None:
    rows = revision_sft_rows(sample_revisions())
    assert len(rows) == 3  # the blank revision gives none
    assert rows[0] == {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hello there!"},
        ]
    }
    assert rows[2]["messages"][0]["content"] == "Grüß dich\n\nund?"  # type: ignore[index]
    changed = revision_sft_rows(sample_revisions(), changed_only=True)
    assert [r["messages"][1]["content"] for r in changed] == [  # type: ignore[index]
        "Hello there!",
        'He said "yes"\nthen left',
    ]


def test_trl_rows_pair_each_changed_revision_with_its_original() -> None:
    assert revision_trl_rows(sample_revisions()) == [
        {"prompt": "Say hi.", "chosen": "Hello there!", "rejected": "hi"},
        {"prompt": "Grüß dich\n\nund?", "chosen": 'He said "yes"\nthen left',
         "rejected": 'He said "no"'},
    ]  # fmt: skip
    conversational = revision_trl_rows(sample_revisions()[:1], conversational=True)
    assert conversational == [
        {
            "prompt": [{"role": "user", "content": "Say hi."}],
            "chosen": [{"role": "assistant", "content": "Hello there!"}],
            "rejected": [{"role": "assistant", "content": "hi"}],
        }
    ]


def test_kto_label_is_strictly_above_the_middle_of_each_scale() -> None:
    rows = rating_kto_rows(sample_ratings())
    assert [r["label"] for r in rows] == [True, False, True, False]  # 5>4, 4=4, .75>.5, -2<0
    assert rows[2] == {"prompt": "日本語\n\nmore", "completion": "ok", "label": True}
    assert [r["label"] for r in rating_kto_rows(sample_ratings(), threshold=0.7)] == [
        True, True, True, False,
    ]  # fmt: skip
    (conversational,) = rating_kto_rows(sample_ratings()[:1], conversational=True)
    assert conversational["prompt"] == [{"role": "user", "content": "Rate this."}]
    assert conversational["completion"] == [{"role": "assistant", "content": "=HYPERLINK(1)"}]
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        rating_kto_rows(sample_ratings(), threshold=float("nan"))


def test_ratings_csv_one_row_per_rating_spreadsheet_safe(tmp_path: Path) -> None:
    plain = pd.read_csv(write_ratings_csv(sample_ratings(), tmp_path / "plain.csv"))
    assert list(plain.columns) == [*RATING_COLUMNS, "aspect_clarity", "aspect_safety"]
    assert plain["response"].tolist() == ["=HYPERLINK(1)", "=HYPERLINK(1)", "ok", "-2 points"]
    assert plain["score"].tolist() == [5, 4, 0.75, -2]
    assert plain["prompt"][2] == "日本語\n\nmore"
    assert plain["aspect_safety"].tolist()[1] == 7 and plain["aspect_safety"].isna().sum() == 3
    safe = pd.read_csv(
        write_ratings_csv(sample_ratings(), tmp_path / "safe.csv.gz", spreadsheet_safe=True),
        keep_default_na=False,
    )
    assert safe["response"].tolist() == ["'=HYPERLINK(1)", "'=HYPERLINK(1)", "ok", "'-2 points"]
    assert safe["source"].tolist() == ["", "", "'-proj", ""]
    assert safe["score"].tolist() == [5, 4, 0.75, -2]  # numbers never change
    rows = rating_csv_rows(sample_ratings(), spreadsheet_safe=True)
    assert rows[0]["contributor"] == "ann" and rows[0]["scale_max"] == 7.0
    empty = pd.read_csv(write_ratings_csv([], tmp_path / "empty.csv"))
    assert list(empty.columns) == list(RATING_COLUMNS) and len(empty) == 0


def test_every_export_loads_with_datasets(tmp_path: Path) -> None:
    from datasets import load_dataset

    def load(path: Path, kind: str = "json") -> list[dict]:
        data = load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path))
        return data.to_list()

    revisions, ratings = sample_revisions(), sample_ratings()
    assert load(write_revision_sft_jsonl(revisions, tmp_path / "sft.jsonl")) == (
        revision_sft_rows(revisions)
    )
    assert load(write_revision_trl_jsonl(revisions, tmp_path / "trl.jsonl")) == (
        revision_trl_rows(revisions)
    )
    path = write_revision_trl_jsonl(revisions, tmp_path / "trl-chat.jsonl", conversational=True)
    assert load(path) == revision_trl_rows(revisions, conversational=True)
    assert load(write_rating_kto_jsonl(ratings, tmp_path / "kto.jsonl.gz")) == (
        rating_kto_rows(ratings)
    )
    assert [r["id"] for r in load(write_revisions_jsonl(revisions, tmp_path / "r.jsonl"))] == [
        r.id for r in revisions
    ]
    loaded = load(write_ratings_jsonl(ratings, tmp_path / "a.jsonl"))
    assert [r["score"] for r in loaded] == [5, 4, 0.75, -2]
    assert loaded[3]["aspects"]["clarity"] == -1
    table = load(write_ratings_csv(ratings, tmp_path / "a.csv"), "csv")
    assert [r["id"] for r in table] == [r.id for r in ratings]


# ------------------------------------------------------------------------------ @car


def test_car_revisions_are_the_2540_expert_pairs() -> None:
    revisions = load_revisions("@car")
    assert len(revisions) == 2540 and len({r.id for r in revisions}) == 2540
    assert Counter(r.source for r in revisions) == {
        "car:train": 2032,
        "car:valid": 254,
        "car:test": 254,
    }
    assert {r.contributor for r in revisions} == {CAR_EXPERT}
    assert all(r.reference == r.revised and len(r.prompt) == 1 for r in revisions)
    # The same pairs as load_car_pairs: the Alpaca answer revised by the expert.
    test = load_car_revisions("test")
    pairs = load_car_pairs("test")
    assert [r.id for r in test] == pairs["id"].tolist()
    assert [r.original for r in test] == pairs["worse"].tolist()
    assert [r.revised for r in test] == pairs["better"].tolist()
    assert [r.prompt[0] for r in test] == pairs["instruction"].tolist()
    assert [r.id for r in load_revisions("@car:test")] == [r.id for r in test]
    # The experts changed nearly every answer (some rewrote only the instruction).
    assert sum(not r.changed for r in test) == 6
    assert not any("\\n" in r.original for r in revisions)  # originals are unescaped
    items = revision_items(test)
    assert items[0] == {
        "id": "car-test-0",
        "prompt": test[0].prompt[0],
        "response": test[0].original,
        "reference": test[0].revised,
    }


def test_load_revisions_reads_files_and_names_the_choices(tmp_path: Path) -> None:
    path = write_revisions_jsonl(sample_revisions(), tmp_path / "mine.jsonl.gz")
    assert load_revisions(str(path)) == sample_revisions()
    assert set(REVISION_DATASETS) == {"car"}
    with pytest.raises(ValueError, match="unknown revision dataset '@nope'; choose one of: @car"):
        load_revisions("@nope")
    with pytest.raises(ValueError, match="unknown option of @car 'dev'"):
        load_revisions("@car:dev")
    with pytest.raises(ValueError, match=r"revisions are read from JSON Lines.*\.jsonl\.gz"):
        load_revisions(str(tmp_path / "mine.csv"))
    with pytest.raises(FileNotFoundError, match="no revision file"):
        load_revisions(str(tmp_path / "none.jsonl"))


def test_car_revisions_missing_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path))
    with pytest.raises(DatasetMissingError, match="APE_score_train.csv") as err:
        load_car_revisions()
    assert "github.com/IronBeliever/CaR" in str(err.value)
