"""Readers and writers of pairwise comparisons, the TRL export, and the real preference datasets."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from crowdtune.datasets import (
    PREFERENCE_DATASETS,
    DatasetFormatError,
    DatasetMissingError,
    load_car,
    load_comparisons,
    load_hh_rlhf,
    load_llmeval2,
    load_mt_bench,
    load_pandalm,
    parse_hh_transcript,
    read_arena_csv,
    read_jsonl,
    registry,
    trl_rows,
    write_arena_csv,
    write_jsonl,
    write_trl_jsonl,
)
from crowdtune.datasets.car import parse_car_pairs
from crowdtune.datasets.comparisons import FORMULA_PREFIXES
from crowdtune.datasets.hh_rlhf import parse_hh_rlhf
from crowdtune.datasets.pandalm import parse_pandalm
from crowdtune.records import Comparison, Verdict

KAGGLE_HEADER = [
    "id", "model_a", "model_b", "prompt", "response_a", "response_b",
    "winner_model_a", "winner_model_b", "winner_tie",
]  # fmt: skip


def sample_comparisons() -> list[Comparison]:
    """Small data with every feature: ties, multi-turn, non-ASCII, commas, quotes, newlines."""
    return [
        Comparison(
            "1",
            ("Hi, how are you?",),
            ("Fine.",),
            ("Bad.",),
            Verdict.A,
            "ann-1",
            "m1",
            "m2",
            "test",
        ),
        Comparison("2", ("Grüß dich",), ('He said "yes"\nthen left',), ("日本語",), Verdict.B),
        Comparison("3", ("Same?",), ("x",), ("y",), Verdict.TIE, model_a="m1", model_b="m3"),
        Comparison("4", ("Q1", "Q2"), ("a1", "a2"), ("b1", "b2"), Verdict.B, source="multi"),
    ]


def write_kaggle(path: Path, rows: list[list[str]], header: list[str] = KAGGLE_HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def kaggle_row(
    ident: str = "7", prompt: str = '["Hello"]', winners: tuple[str, ...] = ("0", "1", "0")
) -> list[str]:
    return [ident, "gpt-4", "claude", prompt, '["Hi there", null]', '["Hey", "Bye"]', *winners]


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("name", ["cmp.csv", "cmp.csv.gz"])
def test_arena_csv_round_trip(tmp_path: Path, name: str) -> None:
    path = write_arena_csv(sample_comparisons(), tmp_path / name)
    assert read_arena_csv(path) == sample_comparisons()
    if name.endswith(".gz"):
        assert (
            gzip.open(path, "rt", encoding="utf-8")
            .readline()
            .startswith("id,model_a,model_b,prompt")
        )
    else:  # JSON lists keep non-ASCII text as it is
        assert "日本語" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["cmp.jsonl", "cmp.jsonl.gz"])
def test_jsonl_round_trip(tmp_path: Path, name: str) -> None:
    path = write_jsonl(sample_comparisons(), tmp_path / name)
    assert read_jsonl(path) == sample_comparisons()
    assert load_comparisons(str(path)) == sample_comparisons()


def test_kaggle_arena_csv_reads_nulls_and_absent_model_columns(tmp_path: Path) -> None:
    header = [c for c in KAGGLE_HEADER if c not in {"model_a", "model_b"}]
    path = write_kaggle(
        tmp_path / "train.csv",
        [["7", '["Hello", "More"]', '["Hi there", null]', '["Hey", "Bye"]', "0", "0", "1"]],
        header,
    )
    [c] = read_arena_csv(path)
    assert c == Comparison("7", ("Hello", "More"), ("Hi there", ""), ("Hey", "Bye"), Verdict.TIE)
    assert load_comparisons(str(path)) == [c]


FORMULAS = (
    "=1+1",
    "@SUM(A1)",
    '=HYPERLINK("http://evil.example","x")',
    "-2+3",
    "+1",
    "\t=1",
    "\r=1",
)


def formula_comparisons() -> list[Comparison]:
    """A formula in every text cell: id, models, annotator, source, prompt and responses."""
    return [
        Comparison(f, (f,), (f,), (FORMULAS[i - 1],), Verdict.A, f, f, FORMULAS[i - 2], f)
        for i, f in enumerate(FORMULAS)
    ]


def test_arena_csv_spreadsheet_safe_neutralises_formula_cells(tmp_path: Path) -> None:
    """OWASP's rule: a cell beginning with =, +, -, @, a tab or a carriage return gets a single
    quote in front; the turn cells are JSON lists (they begin with "[") and stay as they are."""
    path = write_arena_csv(formula_comparisons(), tmp_path / "safe.csv", spreadsheet_safe=True)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]
    for row, f in zip(rows, FORMULAS, strict=True):
        assert row["id"] == row["model_a"] == row["annotator"] == row["source"] == "'" + f
        assert json.loads(row["prompt"]) == [f]
    back = read_arena_csv(path)  # the quotes stay: JSON Lines keeps the exact text
    assert [c.id for c in back] == ["'" + f for f in FORMULAS]
    assert [c.prompt for c in back] == [c.prompt for c in formula_comparisons()]


@pytest.mark.parametrize("name", ["own.csv", "own.jsonl"])
def test_files_of_your_own_records_keep_formula_text_exactly(tmp_path: Path, name: str) -> None:
    """By default (a user's own arena CSV) and in JSON Lines, the text round-trips unchanged."""
    writer, reader = (
        (write_arena_csv, read_arena_csv) if name.endswith(".csv") else (write_jsonl, read_jsonl)
    )
    assert reader(writer(formula_comparisons(), tmp_path / name)) == formula_comparisons()


def test_writers_reject_duplicate_ids(tmp_path: Path) -> None:
    twice = sample_comparisons()[:1] * 2
    for writer in (write_arena_csv, write_jsonl):
        with pytest.raises(ValueError, match="'1' appears more than once"):
            writer(twice, tmp_path / "dup.csv")


# ---------------------------------------------------------------------------------------------
# arena CSV errors: file, 1-based data row and column are named, nothing is returned


def test_arena_csv_missing_column(tmp_path: Path) -> None:
    header = [c for c in KAGGLE_HEADER if c != "winner_tie"]
    path = write_kaggle(tmp_path / "a.csv", [kaggle_row()[:-1]], header)
    with pytest.raises(DatasetFormatError, match="winner_tie") as err:
        read_arena_csv(path)
    assert str(path) in str(err.value) and err.value.column == "winner_tie"


@pytest.mark.parametrize(
    ("cell", "problem"),
    [('["unclosed"', "not valid JSON"), ('{"a": 1}', "list of strings"), ("[1, 2]", "holds 1")],
)
def test_arena_csv_malformed_json_cell(tmp_path: Path, cell: str, problem: str) -> None:
    path = write_kaggle(
        tmp_path / "a.csv", [kaggle_row("1"), kaggle_row("2"), kaggle_row("3", prompt=cell)]
    )
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_arena_csv(path)
    assert (err.value.row, err.value.column) == (3, "prompt")
    assert f"{path}, data row 3, column 'prompt'" in str(err.value)


@pytest.mark.parametrize(
    "winners", [("1", "1", "0"), ("0", "0", "0"), ("0", "2", "0"), ("0", "", "1")]
)
def test_arena_csv_winners_must_be_one_hot(tmp_path: Path, winners: tuple[str, ...]) -> None:
    path = write_kaggle(tmp_path / "a.csv", [kaggle_row("1"), kaggle_row("2", winners=winners)])
    with pytest.raises(DatasetFormatError) as err:
        read_arena_csv(path)
    assert str(path) in str(err.value) and err.value.row == 2
    assert err.value.column is not None and err.value.column.startswith("winner_")


@pytest.mark.parametrize(
    ("column", "cell", "problem"),
    [
        ("prompt", '["\\x41"]', "not valid JSON \\(Invalid \\\\escape"),
        ("response_a", '["fine", "x\\u0000"]', "turn 2 contains a NUL character"),
        ("response_b", "[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        ("prompt", "[NaN]", "turn 1 NaN is not a finite number"),
        ("id", "x\x00", "contains a NUL character"),
        ("model_a", "m\x00", "contains a NUL character"),
    ],
)
def test_arena_csv_refuses_text_that_cannot_be_stored_or_served(
    tmp_path: Path, column: str, cell: str, problem: str
) -> None:
    rows = [kaggle_row("1"), kaggle_row("2")]
    rows[1][KAGGLE_HEADER.index(column)] = cell
    path = write_kaggle(tmp_path / "a.csv", rows)
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_arena_csv(path)
    assert (err.value.row, err.value.column) == (2, column)


def test_arena_csv_duplicate_id(tmp_path: Path) -> None:
    path = write_kaggle(tmp_path / "a.csv", [kaggle_row("1"), kaggle_row("2"), kaggle_row("1")])
    with pytest.raises(DatasetFormatError, match="repeats data row 1") as err:
        read_arena_csv(path)
    assert (err.value.row, err.value.column) == (3, "id")
    assert f"{path}, data row 3, column 'id'" in str(err.value)


# ---------------------------------------------------------------------------------------------
# JSONL errors: file, line and field


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"verdict": "C"}, "verdict", "verdict must be"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"prompt": "__delete__"}, "prompt", "missing field"),
        ({"response_a": [1]}, "response_a", "list of strings"),
        ({"annotator": 3}, "annotator", "string or null"),
        ({"id": "1"}, "id", "repeats line 1"),
        ({"prompt": ["\ud800"]}, "prompt", "lone surrogate"),
        ({"model_b": "m\x00"}, "model_b", "NUL character"),
    ],
)
def test_jsonl_errors_name_line_and_field(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    good, bad = (c.to_dict() for c in sample_comparisons()[:2])
    bad.update(change)
    bad = {k: v for k, v in bad.items() if v != "__delete__"}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=problem) as err:
        read_jsonl(path)
    assert (err.value.row, err.value.column) == (3, field)  # line 3: the blank line counts
    assert str(path) in str(err.value)


def test_jsonl_line_nested_too_deeply_never_reaches_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="line 1: nested deeper than 32 levels"):
        read_jsonl(path)


def test_jsonl_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps(sample_comparisons()[0].to_dict()) + "\n{not json\n", encoding="utf-8"
    )
    with pytest.raises(DatasetFormatError, match="malformed JSON") as err:
        read_jsonl(path)
    assert err.value.row == 2


# ---------------------------------------------------------------------------------------------
# TRL export


def test_trl_rows_drop_ties_gives_plain_strings_for_single_turn() -> None:
    rows = trl_rows(sample_comparisons()[:3])
    assert rows == [
        {"prompt": "Hi, how are you?", "chosen": "Fine.", "rejected": "Bad."},
        {"prompt": "Grüß dich", "chosen": "日本語", "rejected": 'He said "yes"\nthen left'},
    ]


def test_trl_rows_keep_ties_flags_every_row() -> None:
    rows = trl_rows(sample_comparisons()[:3], ties="keep")
    assert [row["tie"] for row in rows] == [False, False, True]
    assert rows[2] == {"prompt": "Same?", "chosen": "x", "rejected": "y", "tie": True}


def test_trl_rows_rejects_unknown_ties_policy() -> None:
    with pytest.raises(ValueError, match="drop, keep"):
        trl_rows(sample_comparisons(), ties="weight")  # type: ignore[arg-type]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_trl_rows_multi_turn_uses_conversational_format() -> None:
    # Sides differ from the first answer on: the prompt is the first user turn only and each
    # completion carries its own conversation (never the winner's answer in the shared prompt).
    rows = trl_rows(sample_comparisons(), ties="drop")
    assert rows[-1] == {
        "prompt": [user("Q1")],
        "chosen": [assistant("b1"), user("Q2"), assistant("b2")],
        "rejected": [assistant("a1"), user("Q2"), assistant("a2")],
    }
    # Every row of one export has the same format, single-turn ones included.
    assert rows[0] == {
        "prompt": [user("Hi, how are you?")],
        "chosen": [assistant("Fine.")],
        "rejected": [assistant("Bad.")],
    }
    # Shared earlier answers (HH-RLHF style) go into the prompt.
    shared = Comparison("h", ("Q1", "Q2"), ("a1", "good"), ("a1", "bad"), Verdict.A)
    assert trl_rows([shared]) == [
        {
            "prompt": [user("Q1"), assistant("a1"), user("Q2")],
            "chosen": [assistant("good")],
            "rejected": [assistant("bad")],
        }
    ]
    with pytest.raises(ValueError, match="single-turn"):
        trl_rows([shared], conversational=False)


def test_write_trl_jsonl(tmp_path: Path) -> None:
    path = write_trl_jsonl(sample_comparisons()[:3], tmp_path / "trl.jsonl.gz", ties="keep")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert rows == trl_rows(sample_comparisons()[:3], ties="keep")


# ---------------------------------------------------------------------------------------------
# load_comparisons


def test_load_comparisons_rejects_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'@nope'.*@pandalm, @llmeval2, @mt-bench, @hh-rlhf, @car"):
        load_comparisons("@nope")
    with pytest.raises(ValueError, match="option of @car"):
        load_comparisons("@car:dev")
    with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz, \.jsonl, \.jsonl\.gz"):
        load_comparisons(str(tmp_path / "votes.parquet"))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_comparisons(str(tmp_path / "missing.jsonl"))
    assert set(PREFERENCE_DATASETS) == {"pandalm", "llmeval2", "mt-bench", "hh-rlhf", "car"}


def test_registry_maps_every_name_to_its_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each @name calls its dataset module's loader with the option and seed it was given."""
    calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def recorder(name: str):  # noqa: ANN202 - a stand-in loader
        def load(*args: object, **kwargs: object) -> list[Comparison]:
            calls.append((name, args, kwargs))
            return []

        return load

    for name in ["load_pandalm", "load_llmeval2", "load_mt_bench", "load_hh_rlhf", "load_car"]:
        monkeypatch.setattr(registry, name, recorder(name))
    for src in ["@pandalm", "@pandalm:annotators", "@llmeval2", "@mt-bench", "@hh-rlhf"]:
        registry.load_comparisons(src, seed=7)
    registry.load_comparisons("@hh-rlhf:harmless-base", seed=7)
    registry.load_comparisons("@car", seed=7)
    registry.load_comparisons("@car:test", seed=7)
    assert calls == [
        ("load_pandalm", (), {"annotators": False}),
        ("load_pandalm", (), {"annotators": True}),
        ("load_llmeval2", (), {}),
        ("load_mt_bench", (), {"seed": 7}),
        ("load_hh_rlhf", (), {"seed": 7}),
        ("load_hh_rlhf", (("harmless-base",),), {"seed": 7}),
        ("load_car", (), {"split": None, "seed": 7}),
        ("load_car", (), {"split": "test", "seed": 7}),
    ]
    with pytest.raises(ValueError, match="option of @llmeval2"):
        registry.load_comparisons("@llmeval2:x")
    assert all(d.description for d in PREFERENCE_DATASETS.values())


def test_parsers_read_rows_already_in_memory() -> None:
    """The parsers take rows read elsewhere (files read at the edge); errors name the source."""
    records = [
        {"idx": 1, "instruction": "Sum.", "input": "2, 3", "response1": "5", "response2": True}
        | {"annotator1": 1, "annotator2": 1, "annotator3": 0},
    ]
    (vote,) = parse_pandalm(records, Path("memory.json"), "fix it")
    assert (vote.prompt, vote.response_b, vote.verdict) == (("Sum.\n\n2, 3",), ("True",), Verdict.A)
    with pytest.raises(DatasetFormatError, match=r"memory\.json.*JSON array.*fix it"):
        parse_pandalm({"not": "a list"}, Path("memory.json"), "fix it")
    line = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Yes",
        "rejected": "\n\nHuman: Hi\n\nAssistant: No",
    }
    (pair,) = parse_hh_rlhf([(1, line)], "helpful-base", "test", Path("lines"), "")
    assert (pair.prompt, pair.response_a, pair.response_b) == (("Hi",), ("Yes",), ("No",))
    frame = pd.DataFrame(
        {"src": ["Instruction: Add. Response: 2\\n", "Instruction: Add. Response: 2"]}
    )
    pairs = parse_car_pairs(frame.assign(score=["0", "1"]), "test", Path("pairs.csv"), "")
    assert pairs.loc[0, ["id", "better", "worse"]].tolist() == ["car-test-0", "2", "2"]
    with pytest.raises(DatasetFormatError, match="odd number of rows"):
        parse_car_pairs(frame.iloc[:1].assign(score="0"), "test", Path("pairs.csv"), "")


# ---------------------------------------------------------------------------------------------
# real data from the data home


def verdicts(comparisons: list[Comparison]) -> Counter[str]:
    return Counter(c.verdict.name for c in comparisons)


def test_pandalm() -> None:
    majority = load_pandalm()
    assert verdicts(majority) == {"TIE": 105, "A": 422, "B": 472}
    assert majority[17].id == "pandalm-17" and majority[17].source == "pandalm"
    assert majority[0].prompt[0].startswith("The sentence you are given might be too wordy")
    assert "\n\nIf you have any questions about my rate" in majority[0].prompt[0]
    votes = load_pandalm(annotators=True)
    assert len(votes) == 2997 and votes[3 * 17 + 1].id == "pandalm-17-annotator2"
    assert Counter(c.annotator for c in votes) == {
        "annotator1": 999,
        "annotator2": 999,
        "annotator3": 999,
    }
    assert verdicts([c for c in votes if c.annotator == "annotator1"]) == {
        "TIE": 97,
        "A": 427,
        "B": 475,
    }
    assert load_comparisons("@pandalm:annotators") == votes


def test_llmeval2() -> None:
    comparisons = load_llmeval2()
    assert verdicts(comparisons) == {"A": 1050, "B": 1021, "TIE": 482}
    sources = Counter(c.source for c in comparisons)
    assert len(sources) == 15 and sources["llmeval2:mt-bench"] == 275


def test_mt_bench() -> None:
    votes = load_mt_bench(seed=0)
    assert len(votes) == 1751 and len({c.id for c in votes}) == 1751
    assert len({c.annotator for c in votes}) == 65
    assert len({c.model_a for c in votes} | {c.model_b for c in votes}) == 6
    assert verdicts(votes)["TIE"] == 417
    assert Counter(len(c.prompt) for c in votes) == {1: 882, 2: 869}
    assert all(len(c.prompt) == len(c.response_a) == len(c.response_b) for c in votes)
    # The file favours B (294 A / 1,040 B); the randomised order does not.
    decided = [c for c in votes if c.verdict is not Verdict.TIE]
    assert 0.4 < sum(c.verdict is Verdict.A for c in decided) / len(decided) < 0.6
    assert load_mt_bench(seed=0) == votes
    other = load_mt_bench(seed=1)
    assert other != votes and {c.id for c in other} == {c.id for c in votes}
    # A swap changes sides, models and verdict together: the winning model stays the same.
    first = {c.id: c for c in votes}
    for c in other[:50]:
        d = first[c.id]
        assert c == d or c == d.swapped()


def test_hh_rlhf() -> None:
    pairs = load_hh_rlhf()
    assert len(pairs) == 4666 and verdicts(pairs)["TIE"] == 0
    assert Counter(c.source for c in pairs) == {
        "hh-rlhf:helpful-base": 2354,
        "hh-rlhf:harmless-base": 2312,
    }
    assert all(len(c.prompt) == len(c.response_a) == len(c.response_b) for c in pairs)
    assert all(c.response_a[:-1] == c.response_b[:-1] for c in pairs)
    assert max(len(c.prompt) for c in pairs) > 5
    assert 0.45 < verdicts(pairs)["A"] / len(pairs) < 0.55
    # No turn marker leaks into a parsed prompt.
    assert not any(
        "\n\nHuman: " in turn or "\n\nAssistant: " in turn for c in pairs for turn in c.prompt
    )
    assert len(load_comparisons("@hh-rlhf:harmless-base")) == 2312


def test_hh_rlhf_missing_train_split_names_the_file() -> None:
    with pytest.raises(
        DatasetMissingError, match=r"helpful-base/train\.jsonl\.gz.*anthropics/hh-rlhf"
    ):
        load_hh_rlhf(subsets=("helpful-base",), split="train")


def test_parse_hh_transcript_keeps_markers_inside_a_reply() -> None:
    text = "\n\nHuman: Hi\n\nAssistant: One\n\nAssistant: Two\n\nHuman: Bye"
    assert parse_hh_transcript(text) == [
        ("Human", "Hi"),
        ("Assistant", "One\n\nAssistant: Two"),
        ("Human", "Bye"),
    ]


def test_car() -> None:
    pairs = load_car()
    assert Counter(c.source for c in pairs) == {
        "car:train": 2032,
        "car:valid": 254,
        "car:test": 254,
    }
    assert len({c.id for c in pairs}) == 2540 and verdicts(pairs)["TIE"] == 0
    assert not any(
        c.prompt[0].startswith("Instruction:") or c.response_a[0].startswith("Response:")
        for c in pairs
    )
    # The expert revision always wins, whichever side it is on.
    assert all(
        (c.model_a if c.verdict is Verdict.A else c.model_b) == "expert-revised" for c in pairs
    )
    assert 0.45 < verdicts(pairs)["A"] / len(pairs) < 0.55
    # Originals are unescaped, so a literal backslash-n no longer gives the worse side away.
    originals = [c.response_b[0] if c.verdict is Verdict.A else c.response_a[0] for c in pairs]
    assert not any("\\n" in text for text in originals)
    assert [c.id for c in load_car("valid")] == [c.id for c in pairs if c.source == "car:valid"]


def test_missing_dataset_names_file_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path))
    for load, name in [
        (load_pandalm, "testset-v1.json"),
        (load_llmeval2, "LLMEval2_benchmark.json"),
        (load_mt_bench, "human_gpt_comparison.csv"),
        (load_car, "APE_train.csv"),
    ]:
        with pytest.raises(DatasetMissingError, match=name) as err:
            load()
        assert str(tmp_path) in str(err.value) and "github.com" in str(err.value)
