"""Checks shared by every configuration object, with error messages that name the fix."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(value: object, choices: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming ``what``, the bad value and every choice, unless it is one."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(options)}")
