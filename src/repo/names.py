"""Characters that hide in names: the rule paths and tags share, and the test the command
line uses to show any name safely.

Names (paths, tags, host names) end up on terminals. Control characters (C0, DEL, C1)
can drive a terminal; format characters (Unicode category Cf: bidi overrides and
isolates, zero-width spaces and joiners, the byte-order mark) change how the text
around them looks without showing themselves: ``report<U+202E>txt.exe`` reads as
``reportexe.txt``. Paths and tags refuse control characters already; new ones refuse
format characters too (names recorded before are still found by their name).
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidPathError

__all__ = [
    "FORMAT_CHARACTER_HINT",
    "check_path_characters",
    "describe_character",
    "first_format_character",
    "is_hidden",
]

# Control, format, surrogate, line separator, paragraph separator.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))

FORMAT_CHARACTER_HINT = (
    "leave it out: bidi controls and zero-width characters make a name look like another"
)


def is_hidden(ch: str) -> bool:
    """Whether `ch` acts (on a terminal, or on the text around it) instead of showing."""
    return unicodedata.category(ch) in _HIDDEN


def first_format_character(text: str) -> str | None:
    """The first format character (category Cf) in `text`, if any."""
    if text.isascii():  # no ASCII character is one: most names end here
        return None
    return next((ch for ch in text if unicodedata.category(ch) == "Cf"), None)


def describe_character(ch: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)``: a character that cannot be shown as itself."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} ({name})" if name else f"U+{ord(ch):04X}"


def check_path_characters(path: str) -> None:
    """Raise `InvalidPathError` if the (normalised) `path` holds a format character."""
    bad = first_format_character(path)
    if bad is not None:
        shown = repr(path[:80] + ("..." if len(path) > 80 else ""))
        raise InvalidPathError(
            f"path {shown} contains format character {describe_character(bad)}",
            hint=FORMAT_CHARACTER_HINT,
        )
