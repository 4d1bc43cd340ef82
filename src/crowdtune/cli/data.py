"""``crowdtune data``: the data home, downloads and exports."""

from __future__ import annotations

import typer

from crowdtune.cli.common import (
    fail,
)

data_app = typer.Typer(help="The data home: where datasets live, downloading and exporting them.")


@data_app.command("home")
def data_home_cmd() -> None:
    """Print the data home ($CROWDTUNE_DATA, else ~/.cache/crowdtune)."""
    from crowdtune.datasets import data_home

    typer.echo(str(data_home()))


@data_app.command("download")
def data_download_cmd(
    name: str = typer.Argument(..., help="Dataset to fetch: movielens."),
    url: str | None = typer.Option(None, "--url", help="Fetch from this URL instead."),
) -> None:
    """Download a dataset from its canonical source into the data home."""
    from crowdtune.datasets import MOVIELENS_URL, download_movielens

    if name != "movielens":
        fail(f"unknown dataset {name!r}; downloadable: movielens")
    try:
        folder = download_movielens(url=url or MOVIELENS_URL)
    except OSError as exc:
        fail(f"could not download {name}: {exc}")
    typer.echo(str(folder))
