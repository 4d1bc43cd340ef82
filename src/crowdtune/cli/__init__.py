"""The ``crowdtune`` command line: parses options, calls library functions, prints results.

Every command that computes numbers prints a table for people and, with ``--json``, one JSON
object on stdout for scripts. Progress bars go to stderr. One module per command group.
"""

from __future__ import annotations

import sys

import typer

from crowdtune import __version__
from crowdtune.cli.analyze import analyze_app
from crowdtune.cli.assess import assess_cmd
from crowdtune.cli.curate import curate_app
from crowdtune.cli.data import data_app
from crowdtune.cli.db import db_app, projects_app, users_app
from crowdtune.cli.demo import demo_cmd
from crowdtune.cli.emotions import emotions_app
from crowdtune.cli.experiment import experiment_app
from crowdtune.cli.preference import agreement_cmd, leaderboard_cmd, preference_app
from crowdtune.cli.serve import serve_cmd
from crowdtune.cli.shapley import shapley_app
from crowdtune.cli.simulate import simulate_app
from crowdtune.cli.train import train_app

app = typer.Typer(
    help="crowdtune: align language models with feedback from a crowd.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(simulate_app, name="simulate")
app.add_typer(shapley_app, name="shapley")
app.add_typer(data_app, name="data")
app.add_typer(preference_app, name="preference")
app.add_typer(curate_app, name="curate")
app.add_typer(analyze_app, name="analyze")
app.add_typer(train_app, name="train")
app.add_typer(emotions_app, name="emotions")
app.add_typer(experiment_app, name="experiment")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(projects_app, name="projects")
app.command("leaderboard")(leaderboard_cmd)
app.command("agreement")(agreement_cmd)
app.command("serve")(serve_cmd)
app.command("demo")(demo_cmd)
app.command("assess")(assess_cmd)


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"crowdtune {__version__}")
        raise typer.Exit()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
