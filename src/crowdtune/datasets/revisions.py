"""Files of revisions: JSON Lines, and the two exports that train with TRL.

Three formats, written from :class:`~crowdtune.records.Revision` records:

- **JSON Lines**, one :meth:`Revision.to_dict` per line (:func:`write_revisions_jsonl`,
  :func:`read_revisions_jsonl`): crowdtune's own lossless format.
- **SFT rows** (:func:`revision_sft_rows`), write-only: TRL's conversational language modelling
  format, ``{"messages": [{"role": "user", "content": prompt}, {"role": "assistant",
  "content": revised}]}``, for ``SFTTrainer``.
- **Preference rows** (:func:`revision_trl_rows`), write-only: TRL's preference format
  (``prompt``, ``chosen`` = the revision, ``rejected`` = the original), for ``RewardTrainer``
  and ``DPOTrainer``; only revisions that changed the answer
  (:attr:`Revision.changed <crowdtune.records.Revision.changed>`) give a pair.

A revision stores its prompt's user turns but not the assistant turns between them (the
campaign shows one answer, the last one). So the training exports put the prompt in as one
user message, its turns joined with :data:`~crowdtune.records.TURN_SEPARATOR` as in
:func:`~crowdtune.records.revisions_frame`, rather than invent a conversation that never
happened; every item of a revision project has a single turn anyway. A revision whose text is
blank gives no training row (it teaches nothing, and TRL's tokenisation of an empty completion
differs between trainers).

The reader validates the whole file and raises
:class:`~crowdtune.datasets.DatasetFormatError` naming the file, the line and the field of the
first problem. Names ending in ``.gz`` are read and written gzip-compressed; writers replace the
file atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crowdtune.datasets.items import (
    check_fields,
    checked_rows,
    optional_text,
    prompt_turns,
    record_id,
    required_text,
)
from crowdtune.datasets.textfile import json_lines, unique_ids, write_json_lines
from crowdtune.records import Revision, join_turns

__all__ = [
    "REVISION_FIELDS",
    "read_revisions_jsonl",
    "revision_sft_rows",
    "revision_trl_rows",
    "write_revision_sft_jsonl",
    "write_revision_trl_jsonl",
    "write_revisions_jsonl",
]

_REQUIRED = ("id", "prompt", "original", "revised")
_OPTIONAL = ("contributor", "source", "reference")
#: Fields of a JSON Lines revision, in :meth:`Revision.to_dict`'s order.
REVISION_FIELDS = (*_REQUIRED, *_OPTIONAL)
_HOW = (
    "fix the file, or write it again with crowdtune.datasets.revisions.write_revisions_jsonl "
    "(see the module docs of crowdtune.datasets.revisions for the format)"
)


def _revision_from_json(data: Mapping[str, Any]) -> Revision:
    check_fields(data, _REQUIRED, _OPTIONAL)
    return Revision(
        id=record_id(data["id"]),
        prompt=tuple(prompt_turns(data["prompt"])),
        original=required_text(data["original"], "original"),
        revised=required_text(data["revised"], "revised"),
        **{name: optional_text(data.get(name), name) for name in _OPTIONAL},
    )


def read_revisions_jsonl(path: str | Path) -> list[Revision]:
    """Read revisions written by :func:`write_revisions_jsonl` (one JSON object per line).

    Parameters
    ----------
    path
        A ``.jsonl`` or ``.jsonl.gz`` file. Each non-blank line holds the fields of
        :meth:`Revision.to_dict`: ``id`` (a string, or an integer), ``prompt`` (a string or a
        list of strings), ``original`` and ``revised`` (strings) are required;
        ``contributor``, ``source`` and ``reference`` are optional strings or null.

    Returns
    -------
    list of Revision
        One per line, in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DatasetFormatError
        A line is not a JSON object, misses a required field or has an unknown one, a field
        has the wrong type or holds a NUL or a lone surrogate, or an id repeats. The error
        names the file, the 1-based line and the field; nothing is returned.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no revision file at {path}")
    return checked_rows(path, json_lines(path, _HOW), _revision_from_json, _HOW)


def write_revisions_jsonl(revisions: Iterable[Revision], path: str | Path) -> Path:
    """Write revisions as JSON Lines, one :meth:`Revision.to_dict` per line.

    Parameters
    ----------
    revisions
        The records; ids must be unique (``ValueError`` naming the first that repeats).
    path
        Target file; a name ending in ``.gz`` is gzip-compressed. Replaced atomically.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    rows = (r.to_dict() for r in unique_ids(revisions, "revision"))
    return write_json_lines(rows, Path(path))


def _trainable(revisions: Iterable[Revision]) -> list[Revision]:
    return [r for r in revisions if r.revised.strip()]


def revision_sft_rows(
    revisions: Iterable[Revision], *, changed_only: bool = False
) -> list[dict[str, object]]:
    """Rows in TRL's conversational language modelling format, for ``SFTTrainer``.

    Parameters
    ----------
    revisions
        The records to export.
    changed_only
        Leave out the revisions that kept the answer as it was. By default they are kept: a
        contributor who leaves an answer unchanged says it is already good.

    Returns
    -------
    list of dict
        ``{"messages": [{"role": "user", "content": <prompt turns joined>}, {"role":
        "assistant", "content": <revised>}]}`` per revision, in input order; none for a blank
        revision.
    """
    return [
        {
            "messages": [
                {"role": "user", "content": join_turns(r.prompt)},
                {"role": "assistant", "content": r.revised},
            ]
        }
        for r in _trainable(revisions)
        if r.changed or not changed_only
    ]


def write_revision_sft_jsonl(
    revisions: Iterable[Revision], path: str | Path, *, changed_only: bool = False
) -> Path:
    """Write :func:`revision_sft_rows` as JSON Lines (``datasets.load_dataset("json", ...)``
    reads it); a ``.gz`` name is gzip-compressed, the file replaced atomically. Returns
    ``path``."""
    return write_json_lines(revision_sft_rows(revisions, changed_only=changed_only), Path(path))


def revision_trl_rows(
    revisions: Iterable[Revision], *, conversational: bool = False
) -> list[dict[str, object]]:
    """Preference pairs in TRL's format: the revision is ``chosen``, the original ``rejected``.

    Only revisions that changed the answer (surrounding whitespace aside) give a pair; an
    unchanged one has nothing to prefer.

    Parameters
    ----------
    revisions
        The records to export.
    conversational
        False (default): TRL's *standard* format, three plain strings, as
        :func:`~crowdtune.datasets.comparisons.trl_rows` writes single-turn comparisons (so the
        two exports train the same way). True: its *conversational* format with an explicit
        prompt, ``prompt`` = ``[{"role": "user", ...}]`` and ``chosen`` / ``rejected`` =
        ``[{"role": "assistant", ...}]``, for a model with a chat template.

    Returns
    -------
    list of dict
        ``{"prompt", "chosen", "rejected"}`` per changed revision, in input order.
    """
    rows: list[dict[str, object]] = []
    for r in _trainable(revisions):
        if not r.changed:
            continue
        prompt = join_turns(r.prompt)
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": r.revised}],
                    "rejected": [{"role": "assistant", "content": r.original}],
                }
            )
        else:
            rows.append({"prompt": prompt, "chosen": r.revised, "rejected": r.original})
    return rows


def write_revision_trl_jsonl(
    revisions: Iterable[Revision], path: str | Path, *, conversational: bool = False
) -> Path:
    """Write :func:`revision_trl_rows` as JSON Lines (``datasets.load_dataset("json", ...)``
    reads it); a ``.gz`` name is gzip-compressed, the file replaced atomically. Returns
    ``path``."""
    return write_json_lines(revision_trl_rows(revisions, conversational=conversational), Path(path))
