"""The MT-Bench human judgments subset: 1,751 expert and author votes on two-turn conversations.

Reads ``<data home>/mt-bench-human-subset/human_gpt_comparison.csv(.gz)`` (see the folder's
``SOURCE.md`` for provenance and licence). :func:`load_mt_bench` opens the file and randomises
the sides, :func:`parse_mt_bench` turns its rows into :class:`~crowdtune.records.Comparison`
records.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from crowdtune.datasets.home import (
    DatasetFormatError,
    dataset_dir,
    how_to_get_from_github,
    require_file,
)
from crowdtune.datasets.textfile import read_csv_strings
from crowdtune.records import Comparison, Verdict, shuffle_sides

__all__ = ["MT_BENCH_COLUMNS", "MT_BENCH_DIRNAME", "load_mt_bench", "parse_mt_bench"]

#: Folder of the dataset in the data home.
MT_BENCH_DIRNAME = "mt-bench-human-subset"

_LABELS = {"model_a": Verdict.A, "model_b": Verdict.B, "tie": Verdict.TIE}
_KEY = ["question_id", "model_a", "model_b", "judge_x", "turn_x"]
#: Columns the file must have (the human ``*_x`` ones; the GPT-4 ``*_y`` ones are not read).
MT_BENCH_COLUMNS = (*_KEY, "winner_x", "conversation_a_x", "conversation_b_x")


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
    probability 1/2 (:func:`~crowdtune.records.shuffle_sides`), verdicts and models following.

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
    folder = dataset_dir(MT_BENCH_DIRNAME)
    how = how_to_get_from_github(
        "Vibhanshu-555/Human-Aligned-LLM-Evaluation-Audit",
        "data/processed/human_gpt_comparison.zip (unzipped)",
        folder,
    )
    path = require_file(
        folder, "human_gpt_comparison.csv", f"{folder}/human_gpt_comparison.csv.gz", how
    )
    frame = read_csv_strings(path, MT_BENCH_COLUMNS, how)
    return shuffle_sides(parse_mt_bench(frame, path, how), seed)


def parse_mt_bench(frame: pd.DataFrame, path: Path, how: str) -> list[Comparison]:
    """The deduplicated votes of the file's rows, in the file's A/B order (:func:`load_mt_bench`).

    Parameters
    ----------
    frame
        The file's rows as strings, with the columns :data:`MT_BENCH_COLUMNS`.
    path, how
        The file and how to get a good copy, for the errors.

    Raises
    ------
    DatasetFormatError
        A conversation is not a Python literal list of four ``(content, role)`` pairs (user,
        assistant, user, assistant) with the same user turns on both sides, or a verdict or turn
        is unknown.
    """
    # 1-based data rows, kept through the dedup
    votes = frame.set_axis(pd.RangeIndex(1, len(frame) + 1)).drop_duplicates(_KEY)
    comparisons = []
    for row, vote in zip(votes.index, votes.to_dict("records"), strict=True):
        if vote["winner_x"] not in _LABELS:
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
        users_a, answers_a = _conversation(
            vote["conversation_a_x"], path, how, row, "conversation_a_x"
        )
        users_b, answers_b = _conversation(
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
                verdict=_LABELS[vote["winner_x"]],
                annotator=vote["judge_x"],
                model_a=vote["model_a"],
                model_b=vote["model_b"],
                source="mt-bench",
            )
        )
    return comparisons


def _conversation(
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
