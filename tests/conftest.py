"""Shared test setup: the data home points at the real datasets, plots never need a display."""

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Files tests leave for people to look at (screenshots); git ignores the folder.
TEST_OUTPUT = Path(__file__).resolve().parent / "output"
_SESSION_START = time.time()
os.environ.setdefault("MPLBACKEND", "Agg")
if "CROWDTUNE_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["CROWDTUNE_DATA"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def movielens_available() -> bool:
    """Fail loudly (never skip silently) when the real MovieLens files are not in the data home."""
    from crowdtune.datasets import data_home

    folder = data_home() / "movielens-ml-latest-small"
    assert (folder / "ratings.csv.gz").exists() or (folder / "ratings.csv").exists(), (
        f"MovieLens is missing from the data home {data_home()}; set CROWDTUNE_DATA or run "
        "`crowdtune data download movielens`"
    )
    return True


#: The PostgreSQL server that runs beside the tests (trust auth); see the README.
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"crowdtune_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a uniquely named PostgreSQL database (each
    test that takes it runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests: with two pytest workers on 2 cores, torch's default
    of one thread per core oversubscribes them and trains many times slower (see MODELS.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the files this run left under tests/output (the browser test's screenshot)."""
    written = sorted(
        path
        for path in TEST_OUTPUT.rglob("*")
        if path.is_file() and path.stat().st_mtime >= _SESSION_START
    )
    if written:
        terminalreporter.section("test output files")
        for path in written:
            terminalreporter.write_line(str(path))
