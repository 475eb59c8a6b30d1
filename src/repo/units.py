"""Sizes and durations as people read them: one way, wherever `repo` shows one."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import UsageError

__all__ = ["human_seconds", "human_size", "parse_age"]

_AGE = re.compile(r"([0-9]{1,6})([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def human_size(size: int | None) -> str:
    """``13 B``, ``1.5 KiB``, ``200.0 MiB``; ``-`` for no size (exact counts are in JSON)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: int) -> str:
    """A duration as people say it: ``7 days``, ``1 day``, ``3 hours``, ``90 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` as a duration (`--older-than`)."""
    found = _AGE.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise UsageError(
            f"not an age: {str(text)[:40]!r}",
            hint="a number and a unit: s, m, h, d or w (e.g. 90d)",
        )
    return timedelta(seconds=int(found.group(1)) * _AGE_UNITS[found.group(2)])
