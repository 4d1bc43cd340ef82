"""Self-contained HTML reports with embedded PNG plots; they lay out results, never compute them.

:func:`render_report` writes one HTML file from :class:`Section` objects, which each stage builds
from its results (:func:`grouping_sections` for the grouping simulation, :func:`sweep_sections`
for sweeps, :func:`credit_sections` for credit schemes) with the helpers
:func:`figure_to_img` and :func:`table_html`.
"""

from crowdtune.reports.credit import credit_sections
from crowdtune.reports.grouping import grouping_sections
from crowdtune.reports.html import Section, figure_to_img, render_report, table_html
from crowdtune.reports.sweep import sweep_sections

__all__ = [
    "Section",
    "credit_sections",
    "figure_to_img",
    "grouping_sections",
    "render_report",
    "sweep_sections",
    "table_html",
]
