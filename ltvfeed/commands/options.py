"""Parsing shared by the CLI modules, so every command reports a bad option the same way."""

from __future__ import annotations

from datetime import date

from ltvfeed.cutoff import parse_as_of


def date_option(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value; None stays None (option not given); the cutoff rule's parser, so a bad date
    reads the same everywhere."""
    return parse_as_of(value, option)
