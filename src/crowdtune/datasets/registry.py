"""Datasets by name: the ``@name`` of a command-line ``SRC`` to the loader of that dataset.

Three tables, one per kind of data a command reads, each mapping a name to a one-line description
and the loader in the dataset's own module:

- :data:`PREFERENCE_DATASETS`, comparisons for ``--data`` (preference models, leaderboards,
  agreement, training): ``@pandalm`` (:mod:`~crowdtune.datasets.pandalm`), ``@llmeval2``,
  ``@mt-bench``, ``@hh-rlhf`` and ``@car``, some with one option after a colon
  (``@pandalm:annotators``, ``@hh-rlhf:helpful-base``, ``@car:test``). :func:`load_comparisons`
  resolves a ``SRC``; anything not starting with ``@`` is an arena CSV or JSON Lines file.
- :data:`REVISION_DATASETS`, revisions (an answer and a better version of it) for revision
  campaigns and supervised fine-tuning: ``@car`` (``:train``, ``:valid``, ``:test``; all three by
  default), CaR's expert revisions of Alpaca answers. :func:`load_revisions` resolves a ``SRC``;
  anything not starting with ``@`` is a JSON Lines file of revisions.
- :data:`TEXT_DATASETS`, plain texts for the linguistic distribution analysis: ``@goemotions``
  (``:train``, the default, ``:dev`` or ``:test``: the Reddit comments, ids the comment ids),
  ``@hh-rlhf`` (``:helpful-base`` / ``:harmless-base``, both by default: the first human turn of
  each test dialogue, i.e. the prompts; add ``:responses`` for the chosen final assistant
  replies) and ``@car`` (``:train``, ``:valid``, ``:test``, the default: the revised instruction
  of each expert pair, i.e. the prompts a curated fine-tuning set answers). :func:`load_texts`
  resolves a ``SRC``; anything not starting with ``@`` is a file (:func:`read_texts`).

Loaders of data whose A/B order carries information (MT-Bench's surviving subset favours B;
HH-RLHF and CaR list the better side first) put the sides in a random order drawn from ``seed``,
so that a predictor cannot learn the position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from crowdtune.datasets.car import CAR_SPLITS, car_instructions, load_car, load_car_revisions
from crowdtune.datasets.comparisons import read_arena_csv, read_arena_pairs, read_jsonl
from crowdtune.datasets.goemotions import GOEMOTIONS_SPLITS, goemotions_texts
from crowdtune.datasets.hh_rlhf import HH_RLHF_SUBSETS, hh_rlhf_texts, load_hh_rlhf
from crowdtune.datasets.llmeval2 import load_llmeval2
from crowdtune.datasets.mt_bench import load_mt_bench
from crowdtune.datasets.pandalm import load_pandalm
from crowdtune.datasets.revisions import read_revisions_jsonl
from crowdtune.datasets.texts import read_texts
from crowdtune.records import Comparison, Revision, comparisons_frame
from crowdtune.validation import check_choice

__all__ = [
    "COMPARISON_FILE_SUFFIXES",
    "PREFERENCE_DATASETS",
    "REVISION_DATASETS",
    "REVISION_FILE_SUFFIXES",
    "TEXT_DATASETS",
    "PreferenceDataset",
    "RevisionDataset",
    "TextDataset",
    "load_comparisons",
    "load_pairs",
    "load_revisions",
    "load_texts",
]


@dataclasses.dataclass(frozen=True)
class PreferenceDataset:
    """A dataset of comparisons that ``--data`` names as ``@name`` or ``@name:option``.

    Attributes
    ----------
    description
        One line for ``crowdtune data list``.
    load
        ``load(option, seed)``: the comparisons, ``option`` None without one; ``seed`` orders the
        sides of the datasets that randomise them.
    options
        The options it accepts after a colon (none: it takes none).
    """

    description: str
    load: Callable[[str | None, int], list[Comparison]]
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RevisionDataset:
    """A dataset of revisions named as ``@name`` or ``@name:option``.

    Attributes
    ----------
    description
        One line for ``crowdtune data list``.
    load
        ``load(option)``: the revisions, ``option`` None without one.
    options
        The options it accepts after a colon (none: it takes none).
    """

    description: str
    load: Callable[[str | None], list[Revision]]
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """A dataset of plain texts that the distribution analysis names as ``@name[:option...]``.

    Attributes
    ----------
    description
        One line.
    load
        ``load(options)``: the texts (columns ``id``, ``text``) for the options after the name
        (split on colons), checking them.
    """

    description: str
    load: Callable[[list[str]], pd.DataFrame]


#: Names accepted by :func:`load_comparisons` (as ``@name``).
PREFERENCE_DATASETS: Mapping[str, PreferenceDataset] = MappingProxyType(
    {
        "pandalm": PreferenceDataset(
            "PandaLM test set: 999 instruction pairs, majority of 3 annotators, ties "
            "(@pandalm:annotators: one vote per annotator)",
            lambda option, seed: load_pandalm(annotators=option is not None),
            options=("annotators",),
        ),
        "llmeval2": PreferenceDataset(
            "LLMEval²: 2,553 pairs from 15 source datasets with human verdicts, ties",
            lambda option, seed: load_llmeval2(),
        ),
        "mt-bench": PreferenceDataset(
            "MT-Bench human judgments subset: 1,751 expert/author votes on 2-turn "
            "conversations of 6 models, ties, A/B randomised",
            lambda option, seed: load_mt_bench(seed=seed),
        ),
        "hh-rlhf": PreferenceDataset(
            "Anthropic HH-RLHF test splits: helpful-base and harmless-base chosen/rejected "
            "dialogues (@hh-rlhf:helpful-base for one), A/B randomised",
            lambda option, seed: (
                load_hh_rlhf(seed=seed) if option is None else load_hh_rlhf((option,), seed=seed)
            ),
            options=HH_RLHF_SUBSETS,
        ),
        "car": PreferenceDataset(
            "CaR expert revisions: 2,540 original Alpaca answers against expert rewrites "
            "(@car:train, :valid or :test for one split), A/B randomised",
            lambda option, seed: load_car(split=option, seed=seed),  # type: ignore[arg-type]
            options=CAR_SPLITS,
        ),
    }
)
#: Names accepted by :func:`load_revisions` (as ``@name``).
REVISION_DATASETS: Mapping[str, RevisionDataset] = MappingProxyType(
    {
        "car": RevisionDataset(
            "CaR expert revisions: 2,540 original Alpaca answers, each revised by an expert "
            "(@car:train, :valid or :test for one split)",
            lambda option: load_car_revisions(split=option),  # type: ignore[arg-type]
            options=CAR_SPLITS,
        ),
    }
)
#: File suffixes :func:`load_revisions` reads (JSON Lines of :class:`Revision` records).
REVISION_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
#: File suffixes :func:`load_comparisons` reads, with their format.
COMPARISON_FILE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")


def _one_option(name: str, options: Sequence[str], choices: Sequence[str], default: str) -> str:
    """The single option of ``@name`` (``default`` without one), checked against ``choices``."""
    if len(options) > 1:
        raise ValueError(f"@{name} takes one option ({', '.join(choices)})")
    choice = options[0] if options else default
    check_choice(choice, choices, f"option of @{name}")
    return choice


def _hh_rlhf_texts(options: list[str]) -> pd.DataFrame:
    responses = bool(options) and options[-1] == "responses"
    subsets = options[:-1] if responses else options
    if len(subsets) > 1:
        src = ":".join(["@hh-rlhf", *options])
        raise ValueError(f"@hh-rlhf takes a subset and/or ':responses', got {src!r}")
    for subset in subsets:
        check_choice(subset, HH_RLHF_SUBSETS, "option of @hh-rlhf")
    return hh_rlhf_texts(subsets or ("helpful-base", "harmless-base"), responses)


#: Names accepted by :func:`load_texts` (as ``@name``).
TEXT_DATASETS: Mapping[str, TextDataset] = MappingProxyType(
    {
        "goemotions": TextDataset(
            "GoEmotions Reddit comments (@goemotions:train (default), :dev, :test)",
            lambda options: goemotions_texts(
                _one_option("goemotions", options, GOEMOTIONS_SPLITS, "train")
            ),
        ),
        "hh-rlhf": TextDataset(
            "HH-RLHF test prompts, the first human turn (@hh-rlhf:helpful-base, "
            ":harmless-base; add :responses for the chosen final replies)",
            _hh_rlhf_texts,
        ),
        "car": TextDataset(
            "CaR expert-revised instructions (@car:test (default), :train, :valid)",
            lambda options: car_instructions(
                _one_option("car", options, CAR_SPLITS, "test")  # type: ignore[arg-type]
            ),
        ),
    }
)


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
        dataset = PREFERENCE_DATASETS[name]
        if option:
            check_choice(option, dataset.options, f"option of @{name}")
        return dataset.load(option or None, seed)
    path = _comparison_file(src)
    if path.name.endswith(_CSV_SUFFIXES):
        return read_arena_csv(path)
    return read_jsonl(path)


def load_pairs(src: str, seed: int = 0) -> pd.DataFrame:
    """Load the pairs a command-line ``SRC`` names, to predict on: no labels needed.

    Parameters
    ----------
    src, seed
        As in :func:`load_comparisons`. An arena CSV may lack the winner columns (Kaggle's
        ``test.csv``: ``id, prompt, response_a, response_b``; :func:`read_arena_pairs`); any
        other source is read by :func:`load_comparisons` and its labels are left out.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`~crowdtune.records.comparisons_frame` but ``label``, one row per
        pair in the source's order.

    Raises
    ------
    ValueError, FileNotFoundError, DatasetFormatError
        As :func:`load_comparisons`.
    """
    if not src.startswith("@") and (path := _comparison_file(src)).name.endswith(_CSV_SUFFIXES):
        return read_arena_pairs(path)
    return comparisons_frame(load_comparisons(src, seed)).drop(columns="label")


def _comparison_file(src: str) -> Path:
    """The comparison file ``src`` names; ``ValueError`` for a suffix of no known format."""
    path = Path(src).expanduser()
    if not path.name.endswith(COMPARISON_FILE_SUFFIXES):
        raise ValueError(
            f"cannot tell the format of {path}: accepted file names end in "
            f"{', '.join(COMPARISON_FILE_SUFFIXES)} (or name a dataset: "
            f"{', '.join('@' + n for n in PREFERENCE_DATASETS)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no comparison file at {path}")
    return path


def load_revisions(src: str) -> list[Revision]:
    """Load the revisions a command-line ``SRC`` names.

    Parameters
    ----------
    src
        ``@<name>`` for a dataset of :data:`REVISION_DATASETS`, with an option after a colon
        where it has one: ``@car`` (all 2,540), ``@car:train``, ``@car:valid``, ``@car:test``.
        Anything else is a ``.jsonl``/``.jsonl.gz`` file of revisions
        (:func:`~crowdtune.datasets.revisions.read_revisions_jsonl`).

    Returns
    -------
    list of Revision

    Raises
    ------
    ValueError
        An unknown dataset name or option (the message lists the known ones), or a file with an
        unknown suffix.
    FileNotFoundError
        The file does not exist (:class:`DatasetMissingError` for a dataset missing from the
        data home).
    DatasetFormatError
        The file or dataset has unexpected content.
    """
    if src.startswith("@"):
        name, _, option = src[1:].partition(":")
        check_choice(f"@{name}", [f"@{known}" for known in REVISION_DATASETS], "revision dataset")
        dataset = REVISION_DATASETS[name]
        if option:
            check_choice(option, dataset.options, f"option of @{name}")
        return dataset.load(option or None)
    path = Path(src).expanduser()
    if not path.name.endswith(REVISION_FILE_SUFFIXES):
        raise ValueError(
            f"cannot tell the format of {path}: revisions are read from JSON Lines, file names "
            f"ending in {', '.join(REVISION_FILE_SUFFIXES)} (or name a dataset: "
            f"{', '.join('@' + n for n in REVISION_DATASETS)})"
        )
    return read_revisions_jsonl(path)


def load_texts(src: str) -> pd.DataFrame:
    """Load the texts a command-line ``SRC`` names (see the module docstring for the datasets).

    Parameters
    ----------
    src
        ``@goemotions[:train|dev|test]``, ``@hh-rlhf[:helpful-base|harmless-base][:responses]``,
        ``@car[:train|valid|test]``, or a ``.txt``, ``.jsonl`` or ``.csv`` file
        (:func:`~crowdtune.datasets.texts.read_texts`).

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (str) and ``text`` (str, possibly empty), plus ``human_score`` and
        ``reward_score`` (float, NaN where missing) when a file has them.

    Raises
    ------
    ValueError
        An unknown dataset, option or file type (the message lists the known ones).
    FileNotFoundError
        The file does not exist (:class:`DatasetMissingError` for a dataset not in the data home).
    DatasetFormatError
        Bad content: non-UTF-8 bytes, invalid JSON, a missing ``text`` field, a non-numeric score
        (the message names the file and line).
    """
    if not src.startswith("@"):
        return read_texts(Path(src).expanduser())
    name, *options = src[1:].split(":")
    check_choice(f"@{name}", [f"@{known}" for known in TEXT_DATASETS], "text dataset")
    return TEXT_DATASETS[name].load(options)
