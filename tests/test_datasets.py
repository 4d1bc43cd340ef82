"""Tests for crowdtune.datasets: the data home, MovieLens loading and download, synthetic crowds.

Real-data tests read MovieLens from the data home ($CROWDTUNE_DATA) with download=False, so they
fail loudly, never silently, when the data is absent. Download tests run against a local HTTP
server that serves a small zip built here.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import pickle
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdtune.datasets import (
    MOVIELENS_GENRES,
    CrowdDistribution,
    DatasetDownloadError,
    DatasetFormatError,
    DatasetMissingError,
    data_home,
    dataset_dir,
    download_movielens,
    fit_crowd_distribution,
    movielens_crowd_distribution,
    movielens_genre_matrix,
    synthetic_crowd,
)
from crowdtune.datasets import movielens as movielens_module

FOLDER = "movielens-ml-latest-small"

# A tiny MovieLens: user 10 comes first in the file so that sorting by userId is exercised.
RATINGS_CSV = b"""userId,movieId,rating,timestamp
10,3,0.5,1
10,2,4.5,2
1,1,4.0,3
1,2,3.0,4
1,3,5.0,5
2,1,2.5,6
2,4,1.0,7
"""
MOVIES_CSV = b"""movieId,title,genres
1,A (2000),Action|Comedy
2,B (2001),Drama
3,"C, The (2002)",Comedy|Drama|Romance
4,D (1999),(no genres listed)
"""
# Worked by hand from the two files above: mean rating per user over each genre's movies.
EXPECTED_NONZERO = {
    1: {"Action": 4.0, "Comedy": 4.5, "Drama": 4.0, "Romance": 5.0},
    2: {"Action": 2.5, "Comedy": 2.5, "(no genres listed)": 1.0},
    10: {"Comedy": 0.5, "Drama": 2.5, "Romance": 0.5},
}
USER_MEANS = {1: 4.0, 2: 1.75, 10: 2.5}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


SMALL_ZIP = build_zip(
    {
        "ml-latest-small/ratings.csv": RATINGS_CSV,
        "ml-latest-small/movies.csv": MOVIES_CSV,
        "ml-latest-small/tags.csv": b"userId,movieId,tag,timestamp\n1,1,fun,3\n",
        "ml-latest-small/README.txt": b"test readme\n",
    }
)
SMALL_SHA256 = {"ratings.csv": sha(RATINGS_CSV), "movies.csv": sha(MOVIES_CSV)}


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, bytes]], str]]:
    """Serve ``{path: body}`` from a local HTTP server; return its base URL. 404 otherwise."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(files: dict[str, bytes]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval makes shutdown() quick (it waits for the next poll).
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_url() -> str:
    """A URL on a local port that nothing listens on (connection refused, no network needed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-latest-small.zip"


def write_dataset(home: Path, files: dict[str, bytes]) -> Path:
    folder = home / FOLDER
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return folder


def expected_small_matrix(missing: str = "zero") -> pd.DataFrame:
    expected = pd.DataFrame(
        0.0, index=pd.Index([1, 2, 10], name="userId"), columns=list(MOVIELENS_GENRES)
    )
    for user, values in EXPECTED_NONZERO.items():
        if missing == "user-mean":
            expected.loc[user] = USER_MEANS[user]
        for genre, value in values.items():
            expected.loc[user, genre] = value
    return expected


# ---------------------------------------------------------------------------------------------
# data home


def test_data_home_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path))
    assert data_home() == tmp_path
    assert dataset_dir("x") == tmp_path / "x"
    assert dataset_dir("x", home=Path("/elsewhere")) == Path("/elsewhere/x")
    monkeypatch.delenv("CROWDTUNE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert data_home() == tmp_path / "me" / ".cache" / "crowdtune"
    with pytest.raises(ValueError, match="plain folder name"):
        dataset_dir("../escape")


def test_errors_survive_pickling() -> None:
    missing = DatasetMissingError("/d/ratings.csv.gz", "a layout", "a command")
    bad = DatasetFormatError("/d/ratings.csv.gz", "bad value", "a command", row=3, column="rating")
    for error in (missing, bad, DatasetDownloadError("http://x", "HTTP 404", "a command")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
    assert isinstance(missing, FileNotFoundError) and missing.path == Path("/d/ratings.csv.gz")
    assert pickle.loads(pickle.dumps(bad)).row == 3


# ---------------------------------------------------------------------------------------------
# MovieLens on the real data


@pytest.fixture(scope="module")
def real_matrix() -> pd.DataFrame:
    return movielens_genre_matrix(download=False)


@pytest.fixture(scope="module")
def real_ratings() -> tuple[dict[int, list[tuple[int, float]]], dict[int, list[str]]]:
    """Independent reading of the real files with csv + gzip only: ratings by user, genres."""
    folder = data_home() / FOLDER
    with gzip.open(folder / "movies.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        genres = {int(row["movieId"]): row["genres"].split("|") for row in csv.DictReader(handle)}
    by_user: dict[int, list[tuple[int, float]]] = {}
    with gzip.open(folder / "ratings.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            by_user.setdefault(int(row["userId"]), []).append(
                (int(row["movieId"]), float(row["rating"]))
            )
    return by_user, genres


def test_real_matrix_shape_and_values(real_matrix: pd.DataFrame) -> None:
    assert real_matrix.shape == (610, 20)
    assert tuple(real_matrix.columns) == MOVIELENS_GENRES
    assert real_matrix.index.name == "userId"
    assert real_matrix.index.is_monotonic_increasing and real_matrix.index[0] == 1
    assert (real_matrix.dtypes == np.float64).all()
    values = real_matrix.to_numpy()
    assert ((values == 0) | ((values >= 0.5) & (values <= 5.0))).all()
    assert (values == 0).any() and (values > 0).mean() > 0.8


@pytest.mark.parametrize(("user", "genre"), [(1, "Comedy"), (414, "Film-Noir"), (610, "Western")])
def test_real_matrix_matches_independent_computation(
    real_matrix: pd.DataFrame, real_ratings: tuple[dict, dict], user: int, genre: str
) -> None:
    by_user, genres = real_ratings
    ratings = [rating for movie, rating in by_user[user] if genre in genres[movie]]
    assert ratings, "pick a user/genre pair with ratings"
    assert real_matrix.loc[user, genre] == pytest.approx(sum(ratings) / len(ratings), abs=1e-12)


def test_real_matrix_user_mean_fill(
    real_matrix: pd.DataFrame, real_ratings: tuple[dict, dict]
) -> None:
    filled = movielens_genre_matrix(missing="user-mean", download=False)
    unrated = real_matrix.to_numpy() == 0
    np.testing.assert_array_equal(filled.to_numpy()[~unrated], real_matrix.to_numpy()[~unrated])
    by_user, _ = real_ratings
    user = int(real_matrix.index[unrated.any(axis=1)][0])
    genre = real_matrix.columns[unrated[real_matrix.index.get_loc(user)]][0]
    ratings = [rating for _, rating in by_user[user]]
    assert filled.loc[user, genre] == pytest.approx(sum(ratings) / len(ratings), abs=1e-12)
    assert not filled.isna().any().any()


def test_real_matrix_drop_genres(real_matrix: pd.DataFrame) -> None:
    dropped = movielens_genre_matrix(drop_genres=["IMAX", "(no genres listed)"], download=False)
    kept = [g for g in MOVIELENS_GENRES if g not in {"IMAX", "(no genres listed)"}]
    assert list(dropped.columns) == kept
    pd.testing.assert_frame_equal(dropped, real_matrix[kept], check_names=False)
    single = movielens_genre_matrix(drop_genres="IMAX", download=False)
    assert "IMAX" not in single.columns and single.shape == (610, 19)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"missing": "mean"}, "zero, user-mean"),
        ({"drop_genres": ["Sci-fi"]}, "Sci-Fi"),  # the choices are listed, spelled right
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        movielens_genre_matrix(**kwargs, download=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# MovieLens on small hand-made files


def test_uncompressed_files_give_hand_computed_matrix(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV})
    zero = movielens_genre_matrix(home=tmp_path, download=False)
    pd.testing.assert_frame_equal(zero, expected_small_matrix(), check_names=False)
    mean = movielens_genre_matrix(missing="user-mean", home=tmp_path, download=False)
    pd.testing.assert_frame_equal(mean, expected_small_matrix("user-mean"), check_names=False)


BAD_RATINGS = RATINGS_CSV.replace(b"1,2,3.0,4", b"1,2,three,4")


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        (
            {"ratings.csv.gz": RATINGS_CSV, "movies.csv.gz": b"\x1f\x8b\x08\x00broken"},
            r"movies\.csv\.gz: cannot be read",
        ),
        (
            {
                "ratings.csv.gz": RATINGS_CSV.replace(b"rating,", b"stars,"),
                "movies.csv": MOVIES_CSV,
            },
            r"ratings\.csv\.gz: missing column\(s\) rating",
        ),
        (
            {"ratings.csv": BAD_RATINGS, "movies.csv": MOVIES_CSV},
            r"ratings\.csv, data row 4, column 'rating': expected a number from 0\.5 to 5\.0, "
            r"got 'three'",
        ),
        (
            {"ratings.csv": RATINGS_CSV.replace(b"2,4,1.0", b"2,4,5.5"), "movies.csv": MOVIES_CSV},
            r"data row 7, column 'rating': expected a number from 0\.5 to 5\.0, got '5\.5'",
        ),
        (
            {"ratings.csv": RATINGS_CSV.replace(b"2,4,1.0", b"2,4,"), "movies.csv": MOVIES_CSV},
            r"data row 7, column 'rating'.*got ''",
        ),
        (
            {"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV.replace(b"Drama\n", b"Dram\n")},
            r"movies\.csv, data row 2, column 'genres': unknown genre 'Dram'",
        ),
        (
            {"ratings.csv": RATINGS_CSV + b"2,99,3.0,8\n", "movies.csv": MOVIES_CSV},
            r"data row 8, column 'movieId': movieId 99 is not in movies\.csv",
        ),
        (
            {"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV + b"2,B again (2001),Drama\n"},
            r"movies\.csv, data row 5, column 'movieId': movieId 2 appears twice",
        ),
        (
            {"ratings.csv": b"userId,movieId,rating,timestamp\n", "movies.csv": MOVIES_CSV},
            r"ratings\.csv: no ratings",
        ),
    ],
    ids=[
        "corrupt-gzip",
        "missing-column",
        "non-numeric",
        "out-of-range",
        "empty-cell",
        "genre",
        "unknown-id",
        "repeated-movie",
        "no-ratings",
    ],  # fmt: skip
)
def test_bad_files_name_file_row_and_column(
    tmp_path: Path, files: dict[str, bytes], pattern: str
) -> None:
    # A ".gz" key is written gzipped, except the corrupt one, which is written as given.
    folder = tmp_path / FOLDER
    folder.mkdir()
    for name, data in files.items():
        compress = name.endswith(".gz") and not data.startswith(b"\x1f\x8b")
        (folder / name).write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetFormatError, match=pattern) as caught:
        movielens_genre_matrix(home=tmp_path, download=False)
    assert "crowdtune data download movielens" in str(caught.value)


def test_missing_file_without_download(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"ratings.csv.gz": RATINGS_CSV})
    with pytest.raises(DatasetMissingError) as caught:
        movielens_genre_matrix(home=tmp_path, download=False)
    message = str(caught.value)
    assert str(tmp_path / FOLDER / "movies.csv.gz") in message
    assert "crowdtune data download movielens" in message
    assert movielens_module.MOVIELENS_URL in message


def test_missing_file_with_failing_download(
    tmp_path: Path, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(movielens_module, "MOVIELENS_URL", closed_url)
    with pytest.raises(DatasetMissingError) as caught:
        movielens_genre_matrix(home=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / FOLDER / "ratings.csv.gz") in message
    assert "crowdtune data download movielens" in message and "automatic download failed" in message
    assert "ratings.csv.gz (or ratings.csv) and movies.csv.gz" in message  # the layout
    assert isinstance(caught.value.__cause__, DatasetDownloadError)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# download from a local server


def test_download_then_load(tmp_path: Path, serve: Callable[[dict[str, bytes]], str]) -> None:
    url = serve({"/ml.zip": SMALL_ZIP}) + "/ml.zip"
    folder = download_movielens(tmp_path, url=url, sha256=SMALL_SHA256, progress=True)
    assert folder == tmp_path / FOLDER
    assert [p.name for p in tmp_path.iterdir()] == [FOLDER]  # no temporary folder left
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.txt", "movies.csv.gz", "ratings.csv.gz", "tags.csv.gz"
    ]  # fmt: skip
    ratings_gz = (folder / "ratings.csv.gz").read_bytes()
    assert gzip.decompress(ratings_gz) == RATINGS_CSV and ratings_gz[4:8] == b"\0\0\0\0"  # mtime 0
    assert (folder / "README.txt").read_bytes() == b"test readme\n"

    matrix = movielens_genre_matrix(home=tmp_path, download=False)
    pd.testing.assert_frame_equal(matrix, expected_small_matrix(), check_names=False)
    # A complete folder is left alone: no network needed the second time.
    assert download_movielens(tmp_path, url="http://127.0.0.1:9/none.zip") == folder


def test_download_real_files_with_official_checksums(
    tmp_path: Path, serve: Callable[[dict[str, bytes]], str], real_matrix: pd.DataFrame
) -> None:
    # The real files, zipped as GroupLens ships them, pass the default (official) checksums.
    real = data_home() / FOLDER
    members = {
        f"ml-latest-small/{name}": gzip.decompress((real / f"{name}.gz").read_bytes())
        for name in ("ratings.csv", "movies.csv", "links.csv", "tags.csv")
    }
    members["ml-latest-small/README.txt"] = (real / "README.txt").read_bytes()
    url = serve({"/ml-latest-small.zip": build_zip(members)}) + "/ml-latest-small.zip"
    folder = download_movielens(tmp_path, url=url, progress=False)
    assert len(list(folder.iterdir())) == 5
    matrix = movielens_genre_matrix(home=tmp_path, download=False)
    pd.testing.assert_frame_equal(matrix, real_matrix)


def test_download_adds_only_missing_files(
    tmp_path: Path, serve: Callable[[dict[str, bytes]], str]
) -> None:
    own = RATINGS_CSV.replace(b"10,3,0.5,1\n", b"")
    folder = write_dataset(tmp_path, {"ratings.csv": own})
    url = serve({"/ml.zip": SMALL_ZIP}) + "/ml.zip"
    download_movielens(tmp_path, url=url, sha256=SMALL_SHA256, progress=False)
    assert (folder / "ratings.csv").read_bytes() == own and not (folder / "ratings.csv.gz").exists()
    assert gzip.decompress((folder / "movies.csv.gz").read_bytes()) == MOVIES_CSV


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, serve: Callable[[dict[str, bytes]], str]
) -> None:
    url = serve({"/ml.zip": SMALL_ZIP}) + "/ml.zip"
    wrong = {**SMALL_SHA256, "movies.csv": "0" * 64}
    with pytest.raises(DatasetFormatError) as caught:
        download_movielens(tmp_path, url=url, sha256=wrong, progress=False)
    message = str(caught.value)
    assert "ml-latest-small/movies.csv" in message
    assert f"expected {'0' * 64}, got {SMALL_SHA256['movies.csv']}" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (b"not a zip", "not a valid zip archive"),
        (build_zip({"ml-latest-small/ratings.csv": RATINGS_CSV}), "no ml-latest-small/movies.csv"),
        (build_zip({"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV}), "no ml-latest-small/"),
    ],
    ids=["not-zip", "no-movies", "no-prefix"],
)
def test_download_bad_archive(
    tmp_path: Path, serve: Callable[[dict[str, bytes]], str], body: bytes, pattern: str
) -> None:
    url = serve({"/ml.zip": body}) + "/ml.zip"
    with pytest.raises(DatasetFormatError, match=pattern):
        download_movielens(tmp_path, url=url, sha256=None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_404_is_clean(tmp_path: Path, serve: Callable[[dict[str, bytes]], str]) -> None:
    url = serve({}) + "/gone.zip"
    with pytest.raises(DatasetDownloadError, match=r"could not download .*/gone\.zip: HTTP 404"):
        download_movielens(tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_rejects_unknown_checksum_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown file"):
        download_movielens(tmp_path, sha256={"ratings.cvs": "0" * 64})


# ---------------------------------------------------------------------------------------------
# synthetic crowd


def test_shipped_distribution_equals_refit(real_matrix: pd.DataFrame) -> None:
    filled = movielens_genre_matrix(missing="user-mean", download=False)
    refit = fit_crowd_distribution(real_matrix, filled)
    shipped = movielens_crowd_distribution()
    assert shipped.genres == refit.genres == MOVIELENS_GENRES
    for name in ("rated_prob", "mean", "cov"):
        assert np.allclose(getattr(shipped, name), getattr(refit, name), rtol=1e-12, atol=1e-12)


def test_fit_on_hand_matrix() -> None:
    matrix = pd.DataFrame([[4.0, 0.0], [2.0, 3.0], [5.0, 1.0]], columns=["a", "b"])
    fitted = fit_crowd_distribution(matrix)  # user 0's unrated "b" is filled with 4.0
    np.testing.assert_allclose(fitted.rated_prob, [1.0, 2 / 3])
    np.testing.assert_allclose(fitted.mean, [11 / 3, 8 / 3])
    np.testing.assert_allclose(fitted.cov, np.cov([[4, 2, 5], [4, 3, 1]]))
    with pytest.raises(ValueError, match=r"0 \(unrated\) or in \[0.5, 5.0\]"):
        fit_crowd_distribution(matrix.replace(1.0, 0.2))


def test_distribution_json_round_trip_and_validation() -> None:
    shipped = movielens_crowd_distribution()
    again = CrowdDistribution.from_json(shipped.to_json())
    assert again.genres == shipped.genres
    assert all(np.array_equal(getattr(again, f), getattr(shipped, f)) for f in ("mean", "cov"))
    with pytest.raises(ValueError, match="lacks the field"):
        CrowdDistribution.from_json('{"genres": ["a"]}')
    with pytest.raises(ValueError, match="shape"):
        CrowdDistribution(("a", "b"), np.ones(2), np.ones(3), np.eye(2))
    with pytest.raises(ValueError, match="read-only"):
        shipped.mean[0] = 1.0


def test_synthetic_shape_range_and_seed() -> None:
    crowd = synthetic_crowd(1000, rng=3)
    assert crowd.shape == (1000, 20) and crowd.dtype == np.float64
    assert ((crowd == 0) | ((crowd >= 0.5) & (crowd <= 5.0))).all()
    np.testing.assert_array_equal(crowd, synthetic_crowd(1000, rng=np.random.default_rng(3)))
    assert not np.array_equal(crowd, synthetic_crowd(1000, rng=4))


def test_synthetic_zero_rate_matches_rated_prob() -> None:
    n_users = 20_000
    crowd = synthetic_crowd(n_users, rng=20_240_611)
    p = movielens_crowd_distribution().rated_prob
    zero_share = (crowd == 0).mean(axis=0)
    five_sd = 5 * np.sqrt(p * (1 - p) / n_users)  # binomial standard deviation of the share
    assert (np.abs(zero_share - (1 - p)) <= five_sd + 1e-12).all()


def test_synthetic_rated_means_close_to_movielens(real_matrix: pd.DataFrame) -> None:
    crowd = synthetic_crowd(20_000, rng=7)
    values = real_matrix.to_numpy()
    for j, p in enumerate(movielens_crowd_distribution().rated_prob):
        gap = abs(crowd[crowd[:, j] > 0, j].mean() - values[values[:, j] > 0, j].mean())
        # Genres almost everyone rated match tightly. Rarely rated genres drift up to ~0.12 stars
        # because the model ignores that the users who rate them like them (missingness).
        assert gap < (0.03 if p >= 0.98 else 0.15), (MOVIELENS_GENRES[j], gap)


def test_synthetic_fewer_dims_keeps_most_rated() -> None:
    distribution = movielens_crowd_distribution()
    top = distribution.most_rated(4)
    assert top.genres == ("Action", "Comedy", "Drama", "Thriller")
    index = [MOVIELENS_GENRES.index(g) for g in top.genres]
    np.testing.assert_array_equal(top.cov, distribution.cov[np.ix_(index, index)])
    crowd = synthetic_crowd(500, n_dims=4, rng=0)
    assert crowd.shape == (500, 4)
    assert (crowd[:, 2] > 0).all()  # Drama: every MovieLens user rated it


@pytest.mark.parametrize(
    ("n_users", "n_dims", "message"),
    [(10, 21, "between 1 and 20"), (10, 0, "between 1 and 20"), (0, 5, "at least 1")],
)
def test_synthetic_bad_sizes(n_users: int, n_dims: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_crowd(n_users, n_dims)
