"""Tag rules and date tags.

A tag is any string of 1-255 characters without control characters or surrounding
whitespace; ``key=value`` is an ordinary tag. Tags are NFC-normalised so that tags which
look the same are the same. A new tag holds no format character either (bidi controls,
zero-width characters: see `names`), which would let one tag pass for another; tags
recorded before that rule are still found and removed by their name.

Date tags are UTC (naive datetimes are taken as UTC)::

    hour=2026-11-25T18   day=2026-11-25   week=2026-W48 (ISO week)   month=2026-11
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from .errors import InvalidTagError
from .names import FORMAT_CHARACTER_HINT, describe_character, first_format_character

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DATE_TAG_TYPES",
    "date_tags",
    "parse_when",
    "tags_with_dates",
    "validate_tag",
    "validate_tags",
]

MAX_TAG_LENGTH = 255

#: Which tags each date-tag type adds. A week does not nest in a month, so "week" adds
#: only the week.
DATE_TAG_TYPES: dict[str, tuple[str, ...]] = {
    "hour": ("hour", "day", "week", "month"),
    "day": ("day", "week", "month"),
    "week": ("week",),
    "month": ("month",),
}


def _is_control(ch: str) -> bool:
    # U+2028/U+2029 are not Cc but end a line like one; tags are printed one per line.
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029"


def validate_tag(tag: object, *, new: bool = False) -> str:
    """Return the normalised tag or raise `InvalidTagError`. A `new` tag (one to record,
    not one to look up or remove) must hold no format character either."""
    if not isinstance(tag, str):
        raise InvalidTagError(f"tag must be a string, got {type(tag).__name__}")
    norm = unicodedata.normalize("NFC", tag)
    shown = repr(norm[:60] + ("..." if len(norm) > 60 else ""))
    if not norm:
        raise InvalidTagError("tag is empty")
    if len(norm) > MAX_TAG_LENGTH:
        raise InvalidTagError(f"tag {shown} is longer than {MAX_TAG_LENGTH} characters")
    bad = next((ch for ch in norm if _is_control(ch)), None)
    if bad is not None:
        raise InvalidTagError(f"tag {shown} contains control character U+{ord(bad):04X}")
    if norm != norm.strip():
        raise InvalidTagError(f"tag {shown} has leading or trailing whitespace")
    hidden = first_format_character(norm) if new else None
    if hidden is not None:
        raise InvalidTagError(
            f"tag {shown} contains format character {describe_character(hidden)}",
            hint=FORMAT_CHARACTER_HINT,
        )
    return norm


def validate_tags(tags: Iterable[object], *, new: bool = False) -> list[str]:
    """Validate every tag first, so a bad one means nothing is written; keep order, drop
    repeats. `new`: see `validate_tag`."""
    if isinstance(tags, str):
        raise InvalidTagError("expected a list of tags, got a single string")
    out: dict[str, None] = {}
    for tag in tags:
        out[validate_tag(tag, new=new)] = None
    return list(out)


def _as_utc(when: datetime | date) -> datetime:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            return when.replace(tzinfo=UTC)
        try:
            return when.astimezone(UTC)
        except OverflowError:
            raise InvalidTagError(
                f"date tag time {when.isoformat()} is outside years 1-9999 in UTC"
            ) from None
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, tzinfo=UTC)
    raise InvalidTagError(f"date tag needs a datetime or date, got {type(when).__name__}")


def date_tags(when: datetime | date, type: str = "day") -> list[str]:  # `type`: the seed API's name
    """The date tags for `when` at granularity `type` (hour, day, week or month)."""
    kinds = DATE_TAG_TYPES.get(type)
    if kinds is None:
        raise InvalidTagError(
            f"unknown date tag type {type!r}", hint="use one of: " + ", ".join(DATE_TAG_TYPES)
        )
    utc = _as_utc(when)
    iso = utc.isocalendar()
    # Not strftime: glibc's %Y does not zero-pad years before 1000.
    ymd = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
    formatted = {
        "hour": f"hour={ymd}T{utc.hour:02d}",
        "day": f"day={ymd}",
        "week": f"week={iso.year:04d}-W{iso.week:02d}",
        "month": f"month={ymd[:7]}",
    }
    return [formatted[k] for k in kinds]


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or date-time from user input (naive means UTC).

    Accepts ``2026-11-25``, ``2026-11-25T18:30``, ``2026-11-25 18:30:00+01:00`` and a
    trailing ``Z``.
    """
    raw = text.strip()
    try:
        if len(raw) == 10:
            return _as_utc(date.fromisoformat(raw))
        return _as_utc(datetime.fromisoformat(raw))
    except ValueError:
        raise InvalidTagError(
            f"not a date: {text[:60]!r}",
            hint="use ISO 8601, e.g. 2026-11-25 or 2026-11-25T18:30Z",
        ) from None


def tags_with_dates(
    tags: Iterable[object],
    *,
    when: datetime | date | None = None,
    period: str | None = None,
    new: bool = True,
) -> list[str]:
    """`tags`, checked (as `new` tags unless told otherwise: they are to be recorded),
    then the date tags of `when` (default now) at `period` (default ``day``) if either is
    given; each once, in that order."""
    names = validate_tags(tags, new=new)
    if when is not None or period is not None:
        names += date_tags(when if when is not None else datetime.now(UTC), period or "day")
    return list(dict.fromkeys(names))
