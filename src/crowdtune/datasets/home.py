"""The data home, where crowdtune reads datasets; the cache directory, where it writes what it
derives from them; and the errors its loaders raise.

Datasets live in ``$CROWDTUNE_DATA`` when that is set, else in ``~/.cache/crowdtune``; each one
in its own folder (``<home>/<dataset name>/``). The data home is input: crowdtune only reads it
(a download of a missing dataset from its canonical source aside, which fills it), so it may be
read-only or shared. Everything derived from the data or from packaged models (converted
checkpoints, fitted classifiers and scorers, embedding caches, score caches) goes under the cache
directory, ``$CROWDTUNE_CACHE`` when that is set, else ``~/.cache/crowdtune``, one subfolder per
kind of artefact (:data:`CACHE_KINDS`, :func:`cache_dir`). A cache that cannot be written is
skipped where the work can go on without it.

The errors carry messages that name the file, what was expected and how to get the data, because
the person reading them usually has to fix the data home by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from crowdtune.validation import check_choice

#: Environment variable that overrides the default data home.
DATA_HOME_ENV = "CROWDTUNE_DATA"
#: Environment variable that overrides the default cache directory.
CACHE_HOME_ENV = "CROWDTUNE_CACHE"
#: The subfolders of the cache directory, one per kind of derived artefact, with what each holds.
CACHE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "embeddings": "text vectors of each encoder, keyed by the SHA-256 of the text (SQLite)",
        "models": "models converted or distilled once: SmolLM2-135M-Instruct from its GGUF, "
        "the m2v encoder from MiniLM",
        "emotions": "the fitted default GoEmotions classifier, its split scores beside it",
        "quality": "the fitted default instruction quality scorer",
    }
)


def _folder_from_env(variable: str) -> Path:
    configured = os.environ.get(variable)
    return Path(configured or "~/.cache/crowdtune").expanduser()


def data_home() -> Path:
    """Return the data home: ``$CROWDTUNE_DATA`` if set, else ``~/.cache/crowdtune``.

    Returns
    -------
    pathlib.Path
        The folder (user-expanded, not necessarily existing).
    """
    return _folder_from_env(DATA_HOME_ENV)


def cache_home() -> Path:
    """Return the cache directory: ``$CROWDTUNE_CACHE`` if set, else ``~/.cache/crowdtune``.

    Returns
    -------
    pathlib.Path
        The folder (user-expanded, not necessarily existing).
    """
    return _folder_from_env(CACHE_HOME_ENV)


def cache_dir(kind: str) -> Path:
    """Return the folder of one kind of derived artefact in the cache directory.

    Parameters
    ----------
    kind
        One of :data:`CACHE_KINDS`.

    Returns
    -------
    pathlib.Path
        ``<cache directory>/<kind>`` (not necessarily existing).

    Raises
    ------
    ValueError
        An unknown kind (the message lists the known ones).
    """
    check_choice(kind, CACHE_KINDS, "cache kind")
    return cache_home() / kind


def dataset_dir(name: str, home: Path | None = None) -> Path:
    """Return the folder of dataset ``name`` in the data home.

    Parameters
    ----------
    name
        Folder name of the dataset, e.g. ``"movielens-ml-latest-small"``.
    home
        Data home to use instead of :func:`data_home`.

    Returns
    -------
    pathlib.Path
        ``<home>/<name>`` (not necessarily existing).

    Raises
    ------
    ValueError
        If ``name`` is not a plain folder name (a path could escape the data home).
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ValueError(f"dataset name must be a plain folder name, got {name!r}")
    return (Path(home).expanduser() if home is not None else data_home()) / name


def find_file(folder: Path, name: str) -> Path | None:
    """``<folder>/<name>.gz`` or ``<folder>/<name>``, whichever exists (gzip first), else None."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def require_file(folder: Path, name: str, expected: str, how_to_get: str) -> Path:
    """:func:`find_file`, or a :class:`DatasetMissingError` naming ``<folder>/<name>.gz``.

    Parameters
    ----------
    folder
        The dataset's folder in the data home.
    name
        The file name without ``.gz``; the gzipped file is looked for first.
    expected, how_to_get
        The error's layout and instructions (see :class:`DatasetMissingError`).
    """
    if (path := find_file(folder, name)) is None:
        raise DatasetMissingError(folder / f"{name}.gz", expected, how_to_get)
    return path


def how_to_get_from_github(repository: str, path: str, folder: Path) -> str:
    """How to get a file published in a GitHub repository, for the loaders' errors."""
    return (
        f"download {path} from https://github.com/{repository} and put it, gzipped or not, into "
        f"{folder}/ (set CROWDTUNE_DATA to use another data home)"
    )


class DatasetMissingError(FileNotFoundError):
    """A dataset file is not in the data home (and could not be downloaded).

    Parameters
    ----------
    path
        The missing file.
    expected
        What should be there (the layout of the dataset folder).
    how_to_get
        How to get the data (a command, an official URL).
    """

    def __init__(self, path: str | Path, expected: str, how_to_get: str) -> None:
        super().__init__(f"missing {path}. Expected: {expected}. To get it: {how_to_get}")
        self.path, self.expected, self.how_to_get = Path(path), expected, how_to_get

    def __reduce__(self) -> tuple[type, tuple[Path, str, str]]:
        # Keeps the error picklable (pytest-xdist, Ray workers) despite the custom signature.
        return type(self), (self.path, self.expected, self.how_to_get)


class DatasetFormatError(ValueError):
    """A dataset file is there but its content is not what the loader expects.

    Parameters
    ----------
    path
        The file (or URL) with the problem.
    problem
        What is wrong, including what was expected and what was found.
    how_to_get
        How to get a good copy.
    row
        1-based data row (the header is not counted), where known.
    column
        Column name, where known.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        how_to_get: str,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = (f", data row {row}" if row is not None else "") + (
            f", column {column!r}" if column else ""
        )
        super().__init__(f"{path}{where}: {problem}. To get a good copy: {how_to_get}")
        self.path, self.problem, self.how_to_get = path, problem, how_to_get
        self.row, self.column = row, column

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return type(self), (self.path, self.problem, self.how_to_get, self.row, self.column)


class DatasetRepairWarning(UserWarning):
    """A reader repaired something in a file, losslessly, and says what and where (the command
    line prints it as a note). Filter it with :mod:`warnings` to silence it, or turn it into an
    error (``warnings.simplefilter("error", DatasetRepairWarning)``) to refuse such files."""


class DatasetDownloadError(OSError):
    """Downloading a dataset from its canonical source failed (network, HTTP status, truncation).

    Parameters
    ----------
    url
        The URL that was fetched.
    reason
        What went wrong.
    how_to_get
        How to get the data by other means.
    """

    def __init__(self, url: str, reason: str, how_to_get: str) -> None:
        super().__init__(f"could not download {url}: {reason}. To get it: {how_to_get}")
        self.url, self.reason, self.how_to_get = url, reason, how_to_get

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (self.url, self.reason, self.how_to_get)
