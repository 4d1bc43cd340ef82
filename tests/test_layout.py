"""The source tree keeps the shape DESIGN.md promises: files small enough to read top-down."""

from __future__ import annotations

from pathlib import Path

import crowdtune

SOURCE = Path(crowdtune.__file__).parent
MAX_LINES = 650


def test_no_source_file_reaches_650_lines():
    sizes = {
        path.relative_to(SOURCE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in SOURCE.rglob("*.py")
        if "migrations" not in path.relative_to(SOURCE).parts
    }
    assert len(sizes) > 50, f"found only {len(sizes)} source files under {SOURCE}"
    too_long = {name: n for name, n in sizes.items() if n >= MAX_LINES}
    assert not too_long, f"split these along their seams (limit {MAX_LINES} lines): {too_long}"
