"""MovieLens ``ml-latest-small``: the user × genre preference matrix, and its download.

The folder ``<data home>/movielens-ml-latest-small/`` holds GroupLens's files gzipped:
``ratings.csv.gz``, ``movies.csv.gz`` (uncompressed ``ratings.csv``/``movies.csv`` also work)
and optionally ``tags.csv.gz``, ``links.csv.gz`` and ``README.txt`` (which carries the GroupLens
usage licence: research use, cite Harper & Konstan 2015). When the required files are missing,
:func:`movielens_genre_matrix` downloads the official zip with :func:`download_movielens`.

The genre matrix is the published crowd of the Crowd-SFT MovieLens experiments: each of the 610
users is a point in a 20-dimensional genre space whose coordinates are the user's mean rating of
the movies of each genre; genres the user never rated are 0.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal
from urllib.error import HTTPError, URLError

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from crowdtune.datasets.home import (
    DatasetDownloadError,
    DatasetFormatError,
    DatasetMissingError,
    dataset_dir,
    find_file,
)

MOVIELENS_DIRNAME = "movielens-ml-latest-small"
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
#: sha256 of the uncompressed files of the official 2018 release (see the dataset's SOURCE.md).
MOVIELENS_SHA256: Mapping[str, str] = MappingProxyType(
    {
        "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    }
)
#: The 20 genre columns in the published order (the alphabetical order of a pandas pivot).
MOVIELENS_GENRES: tuple[str, ...] = (
    "(no genres listed)", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
DOWNLOAD_COMMAND = "crowdtune data download movielens"
MISSING_CHOICES = ("zero", "user-mean")

_REQUIRED = ("ratings.csv", "movies.csv")
_OPTIONAL = ("tags.csv", "links.csv")
_ZIP_PREFIX = "ml-latest-small/"
_RATING_RANGE = (0.5, 5.0)
_CHUNK = 1 << 16  # download read size


def _how_to_get(folder: Path) -> str:
    return (
        f"run `{DOWNLOAD_COMMAND}` (needs network), or download {MOVIELENS_URL} and put the CSV "
        f"files of its {_ZIP_PREFIX} folder (gzipped or not) into {folder}/; set CROWDTUNE_DATA "
        "to use another data home"
    )


def _layout(folder: Path) -> str:
    return (
        f"the folder {folder}/ with ratings.csv.gz (or ratings.csv) and movies.csv.gz "
        "(or movies.csv); tags.csv.gz, links.csv.gz and README.txt are optional"
    )


# ---------------------------------------------------------------------------------------------
# download


def download_movielens(
    home: Path | None = None,
    *,
    url: str = MOVIELENS_URL,
    sha256: Mapping[str, str] | None = MOVIELENS_SHA256,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Download ``ml-latest-small`` into ``<home>/movielens-ml-latest-small/``.

    The zip is fetched with urllib, checked, and its ``ml-latest-small/`` members are written
    gzipped (level 9, mtime 0, so the bytes are reproducible) next to an uncompressed
    ``README.txt``. Everything is written into a temporary sibling folder that is renamed at the
    end, so a failed download leaves nothing behind. A folder that already has the required
    files is left alone; one that lacks some only gets the missing files added.

    Parameters
    ----------
    home
        Data home; :func:`~crowdtune.datasets.data_home` when None.
    url
        Where to fetch the zip.
    sha256
        Expected sha256 of uncompressed members, by file name (e.g. ``"ratings.csv"``); None
        checks nothing. The default holds the official digests of ratings.csv and movies.csv.
    progress
        Show a rich progress bar (when the server sends the size).
    timeout
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        The dataset folder.

    Raises
    ------
    DatasetDownloadError
        The URL could not be fetched (network error, HTTP status, truncated transfer).
    DatasetFormatError
        The archive is not a valid zip, lacks ratings.csv or movies.csv under
        ``ml-latest-small/``, or a checksum does not match.
    ValueError
        ``sha256`` names a file that is not part of the dataset.
    """
    folder = dataset_dir(MOVIELENS_DIRNAME, home)
    sha256 = sha256 or {}
    known = (*_REQUIRED, *_OPTIONAL, "README.txt")
    if unknown := [name for name in sha256 if name not in known]:
        raise ValueError(f"sha256 names unknown file(s) {unknown}; choose from {known}")
    if all(find_file(folder, name) for name in _REQUIRED):
        return folder
    how = _how_to_get(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.", dir=folder.parent) as tmp:
        archive = Path(tmp) / "ml-latest-small.zip"
        _fetch(url, archive, progress=progress, timeout=timeout, how=how)
        staging = Path(tmp) / folder.name
        staging.mkdir()
        _extract(archive, url, staging, sha256, how)
        if not folder.exists():
            try:
                staging.rename(folder)
                return folder
            except OSError:
                if not folder.exists():  # another process won the race only if it exists now
                    raise
        # The folder exists but is incomplete: add what it lacks, never overwrite the user's files.
        for item in staging.iterdir():
            stem = item.name.removesuffix(".gz")
            if find_file(folder, stem) is None:
                item.replace(folder / item.name)
    return folder


def _fetch(url: str, target: Path, *, progress: bool, timeout: float, how: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            received = _copy(response, out, size, progress and size is not None, url)
    except HTTPError as err:
        raise DatasetDownloadError(url, f"HTTP {err.code} {err.reason}", how) from err
    except (URLError, OSError, HTTPException) as err:
        raise DatasetDownloadError(url, str(getattr(err, "reason", err)), how) from err
    if size is not None and received != size:
        raise DatasetDownloadError(url, f"transfer stopped after {received} of {size} bytes", how)


def _copy(source: IO[bytes], out: IO[bytes], size: int | None, show: bool, url: str) -> int:
    received = 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task(f"MovieLens {url.rsplit('/', 1)[-1]}", total=size)
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(task, advance=len(chunk))
    return received


def _extract(archive: Path, url: str, staging: Path, sha256: Mapping[str, str], how: str) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = set(bundle.namelist())
            for name in (*_REQUIRED, *_OPTIONAL, "README.txt"):
                member = _ZIP_PREFIX + name
                if member not in members and (name in _REQUIRED or name in sha256):
                    expected = " and ".join(_ZIP_PREFIX + n for n in _REQUIRED)
                    raise DatasetFormatError(
                        url, f"no {member} in the zip; expected {expected}", how
                    )
                if member not in members:
                    continue
                # Only known member names are read, and written under our own names, so a
                # crafted archive cannot write outside the staging folder. Reading checks the CRC.
                with bundle.open(member) as source:
                    digest = _store(source, staging / name, compress=name != "README.txt")
                if name in sha256 and digest != sha256[name].lower():
                    raise DatasetFormatError(
                        f"{url} ({member})",
                        f"sha256 mismatch: expected {sha256[name]}, got {digest}",
                        how,
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise DatasetFormatError(url, f"not a valid zip archive ({err})", how) from err


def _store(source: IO[bytes], target: Path, *, compress: bool) -> str:
    """Write ``source`` to ``target`` (``target.gz`` when ``compress``); return its sha256."""
    data = source.read()  # the largest member is 2.5 MB, so memory is no concern
    if compress:
        # mtime=0 and no file name in the header (like gzip -n) keep the bytes reproducible.
        target = target.with_name(target.name + ".gz")
        target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    else:
        target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# loading


def _locate(home: Path | None, download: bool) -> tuple[Path, Path]:
    folder = dataset_dir(MOVIELENS_DIRNAME, home)
    failure: Exception | None = None
    if download and any(find_file(folder, name) is None for name in _REQUIRED):
        try:
            # The module constant is read at call time, so a mirror can be set by reassigning it.
            download_movielens(home, url=MOVIELENS_URL)
        except (URLError, OSError) as err:  # offline is normal; the error below says what to do
            failure = err
    found = [find_file(folder, name) for name in _REQUIRED]
    for name, path in zip(_REQUIRED, found, strict=True):
        if path is None:
            how = _how_to_get(folder)
            if failure is not None:
                detail = failure.reason if isinstance(failure, DatasetDownloadError) else failure
                how = f"the automatic download failed ({detail}); {how}"
            raise DatasetMissingError(folder / f"{name}.gz", _layout(folder), how) from failure
    ratings, movies = found
    assert ratings is not None and movies is not None  # for mypy: checked just above
    return ratings, movies


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    how = _how_to_get(path.parent)
    try:
        # No NA parsing: an empty cell must stay visible as a bad value, reported by row below.
        frame = pd.read_csv(path, usecols=lambda c: c in columns, keep_default_na=False)
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as err:
        raise DatasetFormatError(path, f"cannot be read as CSV ({err})", how) from err
    if absent := [c for c in columns if c not in frame.columns]:
        raise DatasetFormatError(
            path, f"missing column(s) {', '.join(absent)}; expected {', '.join(columns)}", how
        )
    return frame


def _numeric(
    frame: pd.DataFrame, path: Path, column: str, *, integer: bool, bounds: tuple[float, float]
) -> pd.Series:
    raw = frame[column]
    # Clean columns parse as numbers already; only text columns need the slow per-cell coercion.
    values = raw if is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | ~values.between(*bounds)
    if integer:
        bad |= values != values.round()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        kind = "an integer id" if integer else f"a number from {bounds[0]} to {bounds[1]}"
        raise DatasetFormatError(
            path,
            f"expected {kind}, got {str(raw.iloc[row])!r}",
            _how_to_get(path.parent),
            row=row + 1,
            column=column,
        )
    return values.astype("int64" if integer else "float64")


def _load(home: Path | None, download: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return validated ``ratings`` (userId, movieId, rating) and exploded ``genres``."""
    ratings_path, movies_path = _locate(home, download)
    ids = (0.0, float(2**62))
    raw = _read_csv(ratings_path, ("userId", "movieId", "rating"))
    ratings = pd.DataFrame(
        {
            "userId": _numeric(raw, ratings_path, "userId", integer=True, bounds=ids),
            "movieId": _numeric(raw, ratings_path, "movieId", integer=True, bounds=ids),
            "rating": _numeric(raw, ratings_path, "rating", integer=False, bounds=_RATING_RANGE),
        }
    )
    if ratings.empty:
        raise DatasetFormatError(
            ratings_path,
            "no ratings; expected one row per rating",
            _how_to_get(ratings_path.parent),
        )
    raw = _read_csv(movies_path, ("movieId", "genres"))
    movie_ids = _numeric(raw, movies_path, "movieId", integer=True, bounds=ids)
    if (repeated := movie_ids.duplicated()).any():
        row = int(repeated.to_numpy().argmax())
        raise DatasetFormatError(
            movies_path,
            f"movieId {movie_ids.iloc[row]} appears twice; expected one row per movie",
            _how_to_get(movies_path.parent),
            row=row + 1,
            column="movieId",
        )
    genres = pd.DataFrame(
        {
            "movieId": movie_ids,
            "genre": raw["genres"].astype(str).str.split("|"),
        }
    ).explode("genre")
    if not (known := genres["genre"].isin(MOVIELENS_GENRES)).all():
        row = int(genres.index[~known.to_numpy()][0])
        raise DatasetFormatError(
            movies_path,
            f"unknown genre {genres['genre'][~known].iloc[0]!r}; expected pipe-separated "
            f"names from {', '.join(MOVIELENS_GENRES)}",
            _how_to_get(movies_path.parent),
            row=row + 1,
            column="genres",
        )
    if not (listed := ratings["movieId"].isin(genres["movieId"])).all():
        row = int(listed.to_numpy().argmin())
        raise DatasetFormatError(
            ratings_path,
            f"movieId {ratings['movieId'].iloc[row]} is not in {movies_path.name}",
            _how_to_get(ratings_path.parent),
            row=row + 1,
            column="movieId",
        )
    return ratings, genres.reset_index(drop=True)


def movielens_genre_matrix(
    *,
    missing: Literal["zero", "user-mean"] = "zero",
    drop_genres: Sequence[str] = (),
    home: Path | None = None,
    download: bool = True,
) -> pd.DataFrame:
    """Return the MovieLens user × genre preference matrix.

    Entry (u, g) is user u's mean rating over the movies of genre g; a movie with several
    pipe-separated genres counts in each of them.

    Parameters
    ----------
    missing
        What a genre the user never rated gets. ``"zero"`` (the published setting): 0.
        ``"user-mean"``: the user's mean rating over all their ratings (each rating counted once),
        a neutral value that does not pull the user towards the origin.
    drop_genres
        Genres to leave out of the columns (a single string counts as one genre).
    home
        Data home; :func:`~crowdtune.datasets.data_home` when None.
    download
        Download the dataset with :func:`download_movielens` when its files are missing.

    Returns
    -------
    pandas.DataFrame
        float64, index ``userId`` sorted ascending (one row per user; 610), columns
        :data:`MOVIELENS_GENRES` minus ``drop_genres`` in that order.

    Raises
    ------
    ValueError
        Unknown ``missing`` or an unknown genre in ``drop_genres``.
    DatasetMissingError
        A required file is missing and could not be downloaded.
    DatasetFormatError
        A file is corrupt, lacks a column, or holds a bad value (named by row and column).
    """
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_CHOICES)}; got {missing!r}")
    dropped = (drop_genres,) if isinstance(drop_genres, str) else tuple(drop_genres)
    if unknown := [g for g in dropped if g not in MOVIELENS_GENRES]:
        raise ValueError(
            f"unknown genre(s) in drop_genres: {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(MOVIELENS_GENRES)}"
        )
    ratings, genres = _load(home, download)
    columns = pd.Index([g for g in MOVIELENS_GENRES if g not in dropped], name="genre")
    users = pd.Index(np.sort(ratings["userId"].unique()), name="userId")
    matrix = (
        ratings.merge(genres, on="movieId")
        .groupby(["userId", "genre"])["rating"]
        .mean()
        .unstack("genre")
        .reindex(index=users, columns=columns)
    )
    if missing == "zero":
        return matrix.fillna(0.0).astype("float64")
    user_mean = ratings.groupby("userId")["rating"].mean().reindex(users).to_numpy()
    values = matrix.to_numpy(dtype="float64")
    filled = np.where(np.isnan(values), user_mean[:, None], values)
    return pd.DataFrame(filled, index=users, columns=columns)
