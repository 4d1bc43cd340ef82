"""The ``crowdtune`` command line: parses options, calls library functions, prints results.

Every command that computes numbers prints a table for people and, with ``--json``, one JSON
object on stdout for scripts. Progress bars go to stderr. One module per command group.

Help texts are Markdown (Typer's ``rich_markup_mode="markdown"``): a command's docstring starts
with a one-line summary (what ``crowdtune --help`` lists), then paragraphs separated by blank
lines, which reflow to the terminal's width; lists and indented code keep their shape.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from crowdtune import __version__
from crowdtune.cli.analyze import analyze_app
from crowdtune.cli.assess import assess_cmd
from crowdtune.cli.crowd import crowd_app
from crowdtune.cli.curate import curate_app
from crowdtune.cli.data import data_app
from crowdtune.cli.db import db_app, users_app
from crowdtune.cli.demo import demo_cmd
from crowdtune.cli.emotions import emotions_app
from crowdtune.cli.experiment import experiment_app
from crowdtune.cli.preference import agreement_cmd, leaderboard_cmd, preference_app
from crowdtune.cli.projects import projects_app
from crowdtune.cli.serve import serve_cmd
from crowdtune.cli.shapley import shapley_app
from crowdtune.cli.simulate import simulate_app
from crowdtune.cli.train import train_app
from crowdtune.cli.worker import worker_cmd

#: The panels of ``crowdtune --help`` and their commands, in the order it shows them: the demo,
#: which runs every stage, then the pipeline's stages (DESIGN.md) and the data they all read.
STAGES = {
    "All stages": ("demo",),
    "Collect": ("serve", "worker", "projects", "users", "crowd", "db"),
    "Credit": ("simulate", "shapley", "experiment"),
    "Curate": ("curate", "analyze"),
    "Model": ("preference", "leaderboard", "agreement", "emotions"),
    "Train and assess": ("train", "assess"),
    "Data": ("data",),
}
_ORDER = [name for names in STAGES.values() for name in names]


def stage_of(name: str) -> str:
    """The panel that lists the top-level command ``name``."""
    return next(stage for stage, names in STAGES.items() if name in names)


class StageGroup(TyperGroup):
    """The top-level group: lists its commands in :data:`STAGES` order."""

    def list_commands(self, ctx: Any) -> list[str]:  # Any: the Context of Typer's own click
        def position(name: str) -> int:
            return _ORDER.index(name) if name in _ORDER else len(_ORDER)

        return sorted(super().list_commands(ctx), key=position)


app = typer.Typer(
    cls=StageGroup,
    help="crowdtune: align language models with feedback from a crowd.\n\n"
    "Start with `crowdtune demo`: every stage on the shipped defaults, with an HTML report. "
    "Commands that compute numbers print a table, or one JSON object with `--json`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command("demo", rich_help_panel=stage_of("demo"))(demo_cmd)
app.command("serve", rich_help_panel=stage_of("serve"))(serve_cmd)
app.command("worker", rich_help_panel=stage_of("worker"))(worker_cmd)
app.command("leaderboard", rich_help_panel=stage_of("leaderboard"))(leaderboard_cmd)
app.command("agreement", rich_help_panel=stage_of("agreement"))(agreement_cmd)
app.command("assess", rich_help_panel=stage_of("assess"))(assess_cmd)
app.add_typer(projects_app, name="projects", rich_help_panel=stage_of("projects"))
app.add_typer(users_app, name="users", rich_help_panel=stage_of("users"))
app.add_typer(crowd_app, name="crowd", rich_help_panel=stage_of("crowd"))
app.add_typer(db_app, name="db", rich_help_panel=stage_of("db"))
app.add_typer(simulate_app, name="simulate", rich_help_panel=stage_of("simulate"))
app.add_typer(shapley_app, name="shapley", rich_help_panel=stage_of("shapley"))
app.add_typer(experiment_app, name="experiment", rich_help_panel=stage_of("experiment"))
app.add_typer(curate_app, name="curate", rich_help_panel=stage_of("curate"))
app.add_typer(analyze_app, name="analyze", rich_help_panel=stage_of("analyze"))
app.add_typer(preference_app, name="preference", rich_help_panel=stage_of("preference"))
app.add_typer(emotions_app, name="emotions", rich_help_panel=stage_of("emotions"))
app.add_typer(train_app, name="train", rich_help_panel=stage_of("train"))
app.add_typer(data_app, name="data", rich_help_panel=stage_of("data"))


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"crowdtune {__version__}")
        raise typer.Exit()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
