"""Building blocks of crowdtune's self-contained HTML reports.

A report is one HTML file with everything inside it: inline CSS, plots as PNG data URIs, no
scripts and no links to the outside, so it can be mailed, archived or opened offline. Each stage
contributes :class:`Section` objects (a title and a trusted HTML fragment built with
:func:`figure_to_img` and :func:`table_html`) and :func:`render_report` writes them out with a
table of contents.

Examples
--------
>>> import pandas as pd
>>> from matplotlib.figure import Figure
>>> fig = Figure()
>>> _ = fig.subplots().plot([0, 1], [1, 0])
>>> body = figure_to_img(fig, alt="a line") + table_html(pd.DataFrame({"x": [0.5]}))
>>> sections = [Section("Plot", body)]
>>> render_report("out/report.html", title="Demo", sections=sections)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import crowdtune

__all__ = [
    "Section",
    "figure_to_img",
    "mpl_text",
    "paragraph",
    "render_report",
    "style_axes",
    "table_html",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
PNG_DPI = 110


@dataclass(frozen=True)
class Section:
    """One titled part of a report.

    Attributes
    ----------
    title : str
        Plain-text heading; it is escaped when rendered.
    html : str
        A trusted HTML fragment, inserted as is. Whoever builds it must escape all user or data
        text inside it (:func:`html.escape`, :func:`table_html` and :func:`paragraph` do).
    """

    title: str
    html: str


def paragraph(text: str, *, css_class: str | None = None) -> str:
    """Return ``text`` as an escaped ``<p>`` element.

    Parameters
    ----------
    text : str
        Plain text; HTML special characters are escaped.
    css_class : str, optional
        A class for the element (``"note"`` renders smaller and grey).
    """
    attr = f' class="{html.escape(css_class)}"' if css_class else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def figure_to_img(fig: Figure, alt: str) -> str:
    """Render a matplotlib figure as an ``<img>`` tag holding a base64 PNG, and close the figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; build it with ``Figure()`` rather than pyplot so no GUI backend is needed.
    alt : str
        Plain-text description for screen readers and broken images; it is escaped.

    Returns
    -------
    str
        ``<img src="data:image/png;base64,..." alt="...">``.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight", facecolor="white")
    # A figure made by pyplot stays registered until closed; a plain Figure is freed with clf().
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clf()
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def style_axes(ax: Axes) -> None:
    """The house style of a plot: a light grid, no top or right spine."""
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def mpl_text(text: str) -> str:
    """Escape text for matplotlib, which would otherwise read ``$...$`` as math."""
    return str(text).replace("$", r"\$")


def _format_cell(value: Any, float_format: str) -> tuple[str, bool]:
    """Return the escaped text of one cell and whether it is numeric (right-aligned)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "&ndash;", False
    if isinstance(value, bool):
        return html.escape(str(value)), False
    if isinstance(value, Integral):
        return html.escape(str(int(value))), True
    if isinstance(value, Real):
        number = float(value)
        if math.isnan(number):
            return "&ndash;", False
        return html.escape(float_format.format(number)), True
    return html.escape(str(value)), False


def table_html(df: pd.DataFrame, *, float_format: str = "{:.3f}", index: bool = False) -> str:
    """Return a DataFrame as an escaped HTML table.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; column names, index labels and every cell are escaped.
    float_format : str, default="{:.3f}"
        A :meth:`str.format` pattern for real numbers; integers are written in full and missing
        values (None, NaN, NA) as a dash.
    index : bool, default=False
        Whether to write the index as the first column.

    Returns
    -------
    str
        A ``<table class="data">`` element inside a horizontally scrolling ``<div>``.
    """
    names = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    head = "".join(f'<th scope="col">{html.escape(name)}</th>' for name in names)
    rows = []
    for label, values in zip(df.index, df.itertuples(index=False, name=None), strict=True):
        cells = [f'<th scope="row">{html.escape(str(label))}</th>'] if index else []
        for value in values:
            text, numeric = _format_cell(value, float_format)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table class="data"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _anchors(titles: Sequence[str]) -> list[str]:
    """Return unique, URL-safe anchor ids for section titles."""
    seen: dict[str, int] = {}
    anchors = []
    for title in titles:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.append(slug if count == 0 else f"{slug}-{count + 1}")
    return anchors


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    path: Path | str, *, title: str, sections: Sequence[Section], intro: str = ""
) -> Path:
    """Write a self-contained HTML report.

    Parameters
    ----------
    path : pathlib.Path or str
        The HTML file to write; missing parent folders are created.
    title : str
        Plain-text report title (escaped).
    sections : sequence of Section
        The sections in order; each gets an anchor and an entry in the table of contents.
    intro : str, default=""
        Plain text shown under the title (escaped); blank lines separate paragraphs.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anchors = _anchors([section.title for section in sections])
    page = (
        _environment()
        .get_template("report.html")
        .render(
            title=title,
            intro=[p.strip() for p in re.split(r"\n\s*\n", intro) if p.strip()],
            sections=[
                {"title": s.title, "html": s.html, "anchor": a}
                for s, a in zip(sections, anchors, strict=True)
            ],
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=crowdtune.__version__,
        )
    )
    path.write_text(page, encoding="utf-8")
    return path
