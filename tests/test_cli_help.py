"""The help a person reads: one-line summaries, commands by stage, paragraphs that reflow."""

import re

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from crowdtune.cli import STAGES, app

runner = CliRunner()
WIDTHS = (80, 120)


def render_help(path: list[str], width: int) -> str:
    result = runner.invoke(
        app, [*path, "--help"], env={"COLUMNS": str(width)}, prog_name="crowdtune"
    )
    assert result.exit_code == 0, result.output
    return result.output


def walk(command, path=()):
    """Every command and group under ``command`` with its path of names."""
    yield list(path), command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


TREE = list(walk(typer.main.get_command(app)))
COMMANDS = {tuple(path): command for path, command in TREE}
GROUPS = [path for path, command in TREE if isinstance(command, TyperGroup)]


def panels(text: str) -> dict[str, list[str]]:
    """The boxed panels of a help page: title -> the lines inside the box."""
    found: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if match := re.match(r"╭─ (.+?) ─", line):
            title = match.group(1)
            found[title] = []
        elif line.startswith("╰"):
            title = None
        elif title is not None:
            found[title].append(line.strip("│").rstrip())
    return found


def words(text: str) -> list[str]:
    """The words of help text, without Markdown's marks (code ticks, fences, list bullets)."""
    text = re.sub(r"^\s*```\s*$", "", text, flags=re.M).replace("`", "")
    return re.sub(r"^\s*[-•]\s", "", text, flags=re.M).split()


def test_every_summary_is_one_line_in_the_source():
    for path, command in TREE[1:]:
        summary = (command.help or "").split("\n\n")[0]
        assert summary and "\n" not in summary, f"crowdtune {' '.join(path)}: {summary!r}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", GROUPS, ids=lambda path: " ".join(["crowdtune", *path]))
def test_command_lists_show_each_summary_on_one_line(path, width):
    group = COMMANDS[tuple(path)]
    text = render_help(path, width)
    rows = [row for title, lines in panels(text).items() if title not in ("Options", "Arguments")
            for row in lines]  # fmt: skip
    # Every row starts with a command's name: a summary never wraps onto a second row.
    names = [row.split()[0] for row in rows]
    assert sorted(names) == sorted(group.commands), text
    for row in rows:
        name, summary = row.split(maxsplit=1)
        assert summary.strip() == " ".join(words(group.commands[name].help.split("\n\n")[0]))
    assert all(len(line) <= width for line in text.splitlines())


@pytest.mark.parametrize("width", WIDTHS)
def test_top_level_commands_are_grouped_by_pipeline_stage(width):
    found = panels(render_help([], width))
    stage_panels = [title for title in found if title != "Options"]
    assert stage_panels == list(STAGES)  # in pipeline order, no catch-all "Commands" panel
    listed = {title: [row.split()[0] for row in found[title]] for title in stage_panels}
    assert listed == {title: list(names) for title, names in STAGES.items()}
    assert sorted(n for names in STAGES.values() for n in names) == sorted(TREE[0][1].commands)
    pipeline = ["Collect", "Credit", "Curate", "Model", "Train and assess", "Data"]
    assert list(STAGES) == ["All stages", *pipeline]


def description(text: str) -> str:
    """The text between the usage line and the first panel."""
    body = text.split("Usage:", 1)[1].split("╭", 1)[0]
    return body.split("\n", 1)[1]


@pytest.mark.parametrize("path", [p for p, _ in TREE], ids=lambda p: " ".join(["crowdtune", *p]))
def test_full_help_keeps_every_word_at_every_width(path):
    command = COMMANDS[tuple(path)]
    for width in WIDTHS:
        shown = description(render_help(path, width))
        assert words(shown) == words(command.help), f"crowdtune {' '.join(path)} at {width}"


def test_a_long_paragraph_reflows_to_the_terminal_width():
    path = ["analyze", "distribution"]
    narrow, wide = (description(render_help(path, width)) for width in WIDTHS)
    assert narrow != wide
    assert words(narrow) == words(wide)
    lines = {width: [line for line in text.splitlines() if line.strip()]
             for width, text in zip(WIDTHS, (narrow, wide), strict=True)}  # fmt: skip
    assert len(lines[80]) > len(lines[120])
    # Reflowed, not broken where the source breaks: lines fill the width.
    assert max(len(line) for line in lines[120]) > 100


def test_lists_and_code_keep_their_shape():
    demo = description(render_help(["demo"], 80))
    assert sum(line.lstrip().startswith("• ") for line in demo.splitlines()) == 5
    train = description(render_help(["train"], 80)).splitlines()
    code = next(i for i, line in enumerate(train) if "accelerate launch" in line)
    assert train[code].rstrip().endswith("train dpo \\")
    assert train[code + 1].lstrip().startswith("--model DIR --data @hh-rlhf --out runs/dpo")
