"""POSIX permission bits of versions: what is recorded when a file is added, how a
`--mode` is read, and how a recorded mode is applied to a copy written out.

Only the nine rwx bits are ever recorded or applied: a mode read from the catalog or the
change journal is input from whoever could write there, and setuid, setgid or sticky
bits on a file written out for a reader would hand that writer the reader's rights.
Applying follows tar's rule for ordinary users: the recorded bits, less the reader's
umask, so a copy is never more open than the reader's own files would be (a 0600 file
stays 0600; a 0666 file becomes 0644 under umask 022).
"""

from __future__ import annotations

import os
import stat

from .errors import UsageError

__all__ = [
    "MODE_BITS",
    "check_mode",
    "current_umask",
    "mode_of",
    "parse_mode",
    "show_mode",
    "written_mode",
]

#: The bits a version may record: rwx for user, group and others.
MODE_BITS = 0o777


def parse_mode(text: str) -> int:
    """A mode given on the command line or in an API call as octal text (``0640``, ``640``,
    ``0o640``)."""
    digits = text.strip()
    if digits[:2].lower() == "0o":
        digits = digits[2:]
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise UsageError(
            f"mode {text!r} is not an octal permission like 0640",
            hint="give three or four octal digits: 0644, 0640, 0600, 0755",
        )
    value = int(digits, 8)
    if value & ~MODE_BITS:
        raise UsageError(
            f"mode {text!r} sets setuid, setgid or sticky bits, which repo never records",
            hint="give only the permission bits, e.g. 0755",
        )
    return value


def check_mode(value: object) -> int:
    """`value` if it is a mode a version may record; UsageError otherwise."""
    if type(value) is not int or not 0 <= value <= MODE_BITS:
        raise UsageError(
            f"mode {value!r} is not a permission between 0o000 and 0o777",
            hint="pass an int such as 0o640, or text such as '0640'",
        )
    return value


def mode_of(st: os.stat_result) -> int:
    """The permission bits a local file's `st` records (special bits dropped)."""
    return stat.S_IMODE(st.st_mode) & MODE_BITS


def current_umask() -> int:
    """This process's umask. Reading it means setting it, so it is set straight back;
    callers read it once per operation, not per file."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def written_mode(recorded: int | None, umask: int) -> int:
    """The bits a copy written out for a reader gets: the `recorded` bits less the
    reader's `umask`; a new file's usual ``0666`` less the umask when nothing is recorded.
    A recorded value outside `MODE_BITS` is refused, not masked."""
    if recorded is None:
        return 0o666 & ~umask
    return check_mode(recorded) & ~umask & MODE_BITS


def show_mode(value: int | None) -> str:
    """``0640`` for `show`, ``-`` when unknown."""
    return "-" if value is None else f"{value:04o}"
