"""Shared test setup: the data home points at the real datasets, plots never need a display."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
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
