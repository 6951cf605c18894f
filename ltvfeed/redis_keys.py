"""Redis key patterns, shared by the feed store, the stack and the commands that scan a project's keys."""

from __future__ import annotations

import re


def glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis SCAN/KEYS pattern (prefixes may hold * ? [ ] \\)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
