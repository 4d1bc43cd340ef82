"""Real human-preference datasets in the data home, read into ``Comparison`` records.

Each loader reads one folder of the data home (see each folder's ``SOURCE.md`` for provenance and
licence): PandaLM's test set (3 annotators, ties), LLMEval² (ties), the MT-Bench human judgments
subset (expert and author judges, two-turn conversations, ties), Anthropic's HH-RLHF (chosen
against rejected dialogues) and CaR's expert revisions (an original Alpaca answer against its
expert rewrite). Loaders of data whose A/B order carries information (MT-Bench's surviving
subset favours B; HH-RLHF and CaR list the better side first) put the sides in a random order drawn
from ``seed``, so that a predictor cannot learn the position. :func:`load_comparisons` resolves
the ``SRC`` argument of the command line: a dataset name such as ``@mt-bench`` or a file.
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import pandas as pd

from crowdtune.datasets.car import CAR_SPLITS, load_car
from crowdtune.datasets.comparisons import read_arena_csv, read_jsonl
from crowdtune.datasets.home import (
    DatasetFormatError,
    dataset_dir,
    how_to_get_from_github,
    require_file,
)
from crowdtune.datasets.textfile import expect_string, json_lines, read_csv_strings
from crowdtune.records import Comparison, Verdict, shuffle_sides
from crowdtune.validation import check_choice

#: Names accepted by :func:`load_comparisons` (as ``@name``), with a one-line description.
PREFERENCE_DATASETS: Mapping[str, str] = MappingProxyType(
    {
        "pandalm": "PandaLM test set: 999 instruction pairs, majority of 3 annotators, ties "
        "(@pandalm:annotators: one vote per annotator)",
        "llmeval2": "LLMEval²: 2,553 pairs from 15 source datasets with human verdicts, ties",
        "mt-bench": "MT-Bench human judgments subset: 1,751 expert/author votes on 2-turn "
        "conversations of 6 models, ties, A/B randomised",
        "hh-rlhf": "Anthropic HH-RLHF test splits: helpful-base and harmless-base chosen/rejected "
        "dialogues (@hh-rlhf:helpful-base for one), A/B randomised",
        "car": "CaR expert revisions: 2,540 original Alpaca answers against expert rewrites "
        "(@car:train, :valid or :test for one split), A/B randomised",
    }
)
#: File suffixes :func:`load_comparisons` reads, with their format.
COMPARISON_FILE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")
HH_RLHF_SUBSETS = ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")
HH_RLHF_SPLITS = ("train", "test")

_PANDALM_LABELS = {0: Verdict.TIE, 1: Verdict.A, 2: Verdict.B}
_PANDALM_ANNOTATORS = ("annotator1", "annotator2", "annotator3")
_LLMEVAL2_LABELS = {"model1": Verdict.A, "model2": Verdict.B, "TIE": Verdict.TIE}
_MT_BENCH_LABELS = {"model_a": Verdict.A, "model_b": Verdict.B, "tie": Verdict.TIE}
_MT_BENCH_KEY = ["question_id", "model_a", "model_b", "judge_x", "turn_x"]
_MT_BENCH_COLUMNS = (*_MT_BENCH_KEY, "winner_x", "conversation_a_x", "conversation_b_x")
_HH_TURN = re.compile(r"(\n\nHuman: |\n\nAssistant: )")
_HH_ASSISTANT = "\n\nAssistant: "


# ---------------------------------------------------------------------------------------------
# PandaLM


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
    folder = dataset_dir("pandalm-testset")
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
    if not isinstance(records, list):
        raise DatasetFormatError(path, "expected a JSON array of objects", how)
    comparisons = []
    for row, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DatasetFormatError(path, "expected a JSON object", how, row=row)
        fields = {}
        for key in ("idx", "instruction", "input", "response1", "response2", *_PANDALM_ANNOTATORS):
            if key not in record:
                raise DatasetFormatError(path, "missing field", how, row=row, column=key)
            fields[key] = record[key]
        labels = {}
        for key in _PANDALM_ANNOTATORS:
            label = fields[key]
            if isinstance(label, bool) or label not in _PANDALM_LABELS:
                raise DatasetFormatError(
                    path, f"expected 0, 1 or 2, got {label!r}", how, row=row, column=key
                )
            labels[key] = _PANDALM_LABELS[label]
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


# ---------------------------------------------------------------------------------------------
# LLMEval²


def load_llmeval2() -> list[Comparison]:
    """The LLMEval² benchmark: 2,553 pairs with human verdicts, ties included.

    Reads ``<data home>/llmeval2/LLMEval2_benchmark.json(.gz)``, which despite its name is JSON
    Lines with the keys ``query``, ``response1``, ``response2``, ``human`` (``model1``,
    ``model2`` or ``TIE``) and ``dataset``. The prompt is ``query`` (empty in the ``mt-bench``
    rows, whose responses hold the whole conversation). Ids are ``llmeval2-<line>`` (0-based);
    the source is ``llmeval2:<dataset>``. The file's A/B order is kept (1,050 A, 1,021 B).

    Returns
    -------
    list of Comparison
        2,553 comparisons: 1,050 A, 1,021 B, 482 ties.

    Raises
    ------
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        A line is not a JSON object with those five string fields, or a verdict is unknown.
    """
    folder = dataset_dir("llmeval2")
    how = (
        "the file LLMEval2_benchmark.json.zip exists only in commit 621d6e6a of "
        "https://github.com/AlibabaResearch/DAMO-ConvAI (WideDeep/evaluation_data/); unzip it and "
        f"put LLMEval2_benchmark.json, gzipped or not, into {folder}/"
    )
    path = require_file(
        folder, "LLMEval2_benchmark.json", f"{folder}/LLMEval2_benchmark.json.gz (JSON Lines)", how
    )
    comparisons = []
    for index, (row, data) in enumerate(json_lines(path, how)):
        text = {
            key: expect_string(data.get(key), path, how, row, key)
            for key in ("query", "response1", "response2", "human", "dataset")
        }
        if text["human"] not in _LLMEVAL2_LABELS:
            raise DatasetFormatError(
                path,
                f"expected model1, model2 or TIE, got {text['human']!r}",
                how,
                row=row,
                column="human",
            )
        comparisons.append(
            Comparison(
                id=f"llmeval2-{index}",
                prompt=(text["query"],),
                response_a=(text["response1"],),
                response_b=(text["response2"],),
                verdict=_LLMEVAL2_LABELS[text["human"]],
                source=f"llmeval2:{text['dataset']}",
            )
        )
    return comparisons


# ---------------------------------------------------------------------------------------------
# MT-Bench


def load_mt_bench(seed: int = 0) -> list[Comparison]:
    """The MT-Bench human judgments subset: 1,751 expert and author votes, ties included.

    Reads ``<data home>/mt-bench-human-subset/human_gpt_comparison.csv(.gz)``, where every human
    vote appears twice (once per GPT-4 turn it was joined to). Votes are deduplicated on
    ``question_id, model_a, model_b, judge_x, turn_x`` and only the human (``*_x``) columns are
    kept. A turn-1 vote has the prompt (user turn 1,) and the responses (assistant turn 1,); a
    turn-2 vote has the prompt (user turn 1, user turn 2) and responses (answer 1, answer 2) of
    each side. The annotator is the judge (``expert_N`` or ``author_N``), the models are named,
    ids are ``mt-bench-<question>-<model_a>-<model_b>-<judge>-turn<k>`` in the file's model order.

    The surviving votes are not a random half of the original ones: in the file ``model_a`` is
    usually the weaker model (294 A against 1,040 B). Each vote's sides are therefore swapped with
    probability 1/2 (:func:`shuffle_sides`), verdicts and models following.

    Parameters
    ----------
    seed
        Seed of the A/B order; the same seed gives the same order.

    Returns
    -------
    list of Comparison
        1,751 votes (417 ties) from 65 judges on 6 models; source ``"mt-bench"``.

    Raises
    ------
    DatasetMissingError
        The file is not in the data home.
    DatasetFormatError
        A column is missing, a conversation is not a Python literal list of four
        ``(content, role)`` pairs (user, assistant, user, assistant) with the same user turns on
        both sides, or a verdict or turn is unknown.
    """
    folder = dataset_dir("mt-bench-human-subset")
    how = how_to_get_from_github(
        "Vibhanshu-555/Human-Aligned-LLM-Evaluation-Audit",
        "data/processed/human_gpt_comparison.zip (unzipped)",
        folder,
    )
    path = require_file(
        folder, "human_gpt_comparison.csv", f"{folder}/human_gpt_comparison.csv.gz", how
    )
    frame = read_csv_strings(path, _MT_BENCH_COLUMNS, how)
    frame.index = pd.RangeIndex(1, len(frame) + 1)  # 1-based data rows, kept through the dedup
    votes = frame.drop_duplicates(_MT_BENCH_KEY)
    comparisons = []
    for row, vote in zip(votes.index, votes.to_dict("records"), strict=True):
        if vote["winner_x"] not in _MT_BENCH_LABELS:
            raise DatasetFormatError(
                path,
                f"expected model_a, model_b or tie, got {vote['winner_x']!r}",
                how,
                row=row,
                column="winner_x",
            )
        if vote["turn_x"] not in {"1", "2"}:
            raise DatasetFormatError(
                path, f"expected 1 or 2, got {vote['turn_x']!r}", how, row=row, column="turn_x"
            )
        turns = int(vote["turn_x"])
        users_a, answers_a = _mt_bench_conversation(
            vote["conversation_a_x"], path, how, row, "conversation_a_x"
        )
        users_b, answers_b = _mt_bench_conversation(
            vote["conversation_b_x"], path, how, row, "conversation_b_x"
        )
        if users_a != users_b:
            raise DatasetFormatError(
                path,
                "the two conversations have different user turns",
                how,
                row=row,
                column="conversation_b_x",
            )
        comparisons.append(
            Comparison(
                id=f"mt-bench-{vote['question_id']}-{vote['model_a']}-{vote['model_b']}-"
                f"{vote['judge_x']}-turn{turns}",
                prompt=users_a[:turns],
                response_a=answers_a[:turns],
                response_b=answers_b[:turns],
                verdict=_MT_BENCH_LABELS[vote["winner_x"]],
                annotator=vote["judge_x"],
                model_a=vote["model_a"],
                model_b=vote["model_b"],
                source="mt-bench",
            )
        )
    return shuffle_sides(comparisons, seed)


def _mt_bench_conversation(
    cell: str, path: Path, how: str, row: int, column: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(user turns, assistant turns) of a ``[(content, role), ...]`` Python literal."""
    try:
        messages = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise DatasetFormatError(
            path, f"not a Python literal ({err})", how, row=row, column=column
        ) from None
    roles = ["user", "assistant", "user", "assistant"]
    if not (
        isinstance(messages, list | tuple)
        and len(messages) == len(roles)
        and all(
            isinstance(m, tuple | list) and len(m) == 2 and isinstance(m[0], str) for m in messages
        )
        and [m[1] for m in messages] == roles
    ):
        raise DatasetFormatError(
            path,
            f"expected four (content, role) pairs with roles {roles}",
            how,
            row=row,
            column=column,
        )
    return (messages[0][0], messages[2][0]), (messages[1][0], messages[3][0])


# ---------------------------------------------------------------------------------------------
# HH-RLHF


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
    parts = _HH_TURN.split(text)
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


def _hh_pair(chosen: str, rejected: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
    """(human turns, shared assistant turns, chosen reply, rejected reply) of one HH-RLHF pair."""
    # The dialogue is the longest common prefix of the two transcripts, cut at its last
    # assistant marker that follows a human turn; after that marker comes each side's final reply
    # (which may itself contain markers, so the cut is not simply the last marker).
    common = _common_prefix_length(chosen, rejected)
    markers = [m for m in _HH_TURN.finditer(chosen) if m.end() <= common]
    cuts = [
        m.start()
        for previous, m in zip(markers, markers[1:], strict=False)
        if previous.group() != _HH_ASSISTANT and m.group() == _HH_ASSISTANT
    ]
    if not cuts:
        raise ValueError("the transcripts share no human turn followed by an assistant reply")
    cut = cuts[-1]
    start = cut + len(_HH_ASSISTANT)
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
    (:func:`shuffle_sides`). Ids are ``hh-rlhf-<subset>-<split>-<line>`` (0-based), the source
    ``hh-rlhf:<subset>``; there are no annotator or model names.

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
        folder = dataset_dir("hh-rlhf") / subset
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
        for index, (row, data) in enumerate(json_lines(path, how)):
            chosen = expect_string(data.get("chosen"), path, how, row, "chosen")
            rejected = expect_string(data.get("rejected"), path, how, row, "rejected")
            try:
                humans, shared, chosen_reply, rejected_reply = _hh_pair(chosen, rejected)
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
    return shuffle_sides(comparisons, seed)


# ---------------------------------------------------------------------------------------------
# command-line sources


def load_comparisons(src: str, seed: int = 0) -> list[Comparison]:
    """Load the comparisons a command-line ``SRC`` argument names.

    Parameters
    ----------
    src
        ``@<name>`` for a dataset of :data:`PREFERENCE_DATASETS`, with an option after a colon
        where it has one: ``@pandalm``, ``@pandalm:annotators``, ``@llmeval2``, ``@mt-bench``,
        ``@hh-rlhf`` (``@hh-rlhf:helpful-base``, ``@hh-rlhf:harmless-base``), ``@car``
        (``@car:train``, ``@car:valid``, ``@car:test``). Anything else is a file:
        ``.csv``/``.csv.gz`` is read as an arena CSV (:func:`read_arena_csv`),
        ``.jsonl``/``.jsonl.gz`` as JSON Lines (:func:`read_jsonl`).
    seed
        Seed of the A/B order of the datasets that randomise it (mt-bench, hh-rlhf, car).

    Returns
    -------
    list of Comparison

    Raises
    ------
    ValueError
        An unknown dataset name or option (the message lists the known ones), or a file with an
        unknown suffix (the message lists the accepted ones).
    FileNotFoundError
        The file does not exist (:class:`DatasetMissingError` for a dataset missing from the
        data home).
    DatasetFormatError
        The file or dataset has unexpected content.
    """
    if src.startswith("@"):
        name, _, option = src[1:].partition(":")
        check_choice(
            f"@{name}", [f"@{known}" for known in PREFERENCE_DATASETS], "preference dataset"
        )
        options: dict[str, tuple[str, ...]] = {
            "pandalm": ("annotators",),
            "hh-rlhf": HH_RLHF_SUBSETS,
            "car": CAR_SPLITS,
        }
        if option:
            check_choice(option, options.get(name, ()), f"option of @{name}")
        if name == "pandalm":
            return load_pandalm(annotators=bool(option))
        if name == "llmeval2":
            return load_llmeval2()
        if name == "mt-bench":
            return load_mt_bench(seed=seed)
        if name == "hh-rlhf":
            return load_hh_rlhf(subsets=(option,), seed=seed) if option else load_hh_rlhf(seed=seed)
        return load_car(split=option or None, seed=seed)  # type: ignore[arg-type]
    path = Path(src).expanduser()
    if not path.name.endswith(COMPARISON_FILE_SUFFIXES):
        raise ValueError(
            f"cannot tell the format of {path}: accepted file names end in "
            f"{', '.join(COMPARISON_FILE_SUFFIXES)} (or name a dataset: "
            f"{', '.join('@' + n for n in PREFERENCE_DATASETS)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no comparison file at {path}")
    if path.name.endswith((".csv", ".csv.gz")):
        return read_arena_csv(path)
    return read_jsonl(path)
