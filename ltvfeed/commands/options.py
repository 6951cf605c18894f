"""Parsing shared by the CLI modules, so every command reports a bad option the same way."""

from __future__ import annotations

from datetime import date

from ltvfeed.errors import UserError


def date_option(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value; None stays None (option not given)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{option} must be a date YYYY-MM-DD, got {value!r}") from exc
