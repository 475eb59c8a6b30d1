"""Rendering for the `repo` command: tables, JSON documents, sizes, times.

JSON field names are part of the interface (docs/cli.md); change them only with a
version note.

Paths, tags, host names and file names come from other people: everything printed goes
through `shown` (via `echo`, `table`, `echo_json`), so that no control or format
character in them reaches the terminal as itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..names import is_hidden
from ..permissions import show_mode
from ..units import human_seconds, human_size

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..catalog import HostCopy
    from ..copy_list import StoreCopy
    from ..file import RepoFile

__all__ = [
    "echo",
    "echo_json",
    "file_doc",
    "human_seconds",
    "human_size",
    "human_time",
    "shown",
    "table",
]


def shown(text: str) -> str:
    """`text` with each control or format character (C0, DEL, C1, bidi controls,
    zero-width characters, line separators: `names.is_hidden`) written as a visible
    escape as Python writes it: ``\\x1b``, ``\\u202e``, ``\\U000e0001``, ``\\n``. A
    backslash stays as it is: what is shown is for reading, JSON output for parsing."""
    if text.isprintable():  # every hidden character is unprintable: most text ends here
        return text
    return "".join(_escape(ch) if is_hidden(ch) else ch for ch in text)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def echo(message: str = "", *, err: bool = False) -> None:
    """`click.echo` for text made for people: each line `shown`, so a name in it cannot
    act on the terminal (a newline in a name is seen as ``\\n`` only where a caller
    passed the name through `shown` itself, as `table` does)."""
    click.echo("\n".join(shown(line) for line in message.split("\n")), err=err)


def human_time(when: datetime | str | None) -> str:
    """The one way a time is shown to people: ``2026-11-25 18:00:00``, in UTC (the
    headers and lines that show one say so). Accepts an ISO 8601 string too (manifests)."""
    if when is None:
        return "-"
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is never padded. Cells are
    `shown`: a name cannot act on the terminal nor break its row."""
    cells = [list(map(str, headers))] + [[shown(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def file_doc(f: RepoFile, tags: Sequence[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f.file_id,
        "path": f.path,
        "state": f.state,
        "size": f.size,
        "md5": f.md5,
        "origin": f.origin,
        "bucket": f.bucket,
        "key": f.key,
        "created_at": iso(f.created_at),
        "uploaded_at": iso(f.uploaded_at),
        "verified_with": f.verified_with,
        "published_at": iso(f.published_at),
        "expired_at": iso(f.expired_at),
        "mode": show_mode(f.mode) if f.mode is not None else None,
        "storage_class": f.storage_class,
        "archived_at": iso(f.archived_at),
    }
    if tags is not None:
        doc["tags"] = list(tags)
    return doc


def host_doc(h: HostCopy) -> dict[str, Any]:
    return {
        "host": h.host,
        "downloaded_at": iso(h.downloaded_at),
        "last_access": iso(h.last_access),
    }


def copy_doc(c: StoreCopy) -> dict[str, Any]:
    return {
        "store": c.store,
        "key": c.key,
        "state": c.state,
        "verified_with": c.verified_with,
        "at": iso(c.when),
        "own": c.own,
        "configured": c.configured,
    }


def copy_line(c: StoreCopy) -> str:
    """``second (verified)``; ``nas (lost)``; a store the configuration lacks, so said."""
    state = c.state if c.configured else f"{c.state}, not configured"
    return f"{c.store} ({state})"


def echo_json(doc: object) -> None:
    """`doc` as JSON, non-ASCII text as itself except hidden characters (`names.is_hidden`):
    ``json.dumps`` escapes only C0 controls, so DEL, C1 controls and bidi controls are
    escaped here, as JSON escapes (``\\u202e``; beyond the BMP, a surrogate pair)."""
    # Line by line: json.dumps has escaped every newline inside a string, so the
    # newlines left are layout, and most lines are printable as they are.
    lines = json.dumps(doc, indent=2, ensure_ascii=False).split("\n")
    click.echo("\n".join(line if line.isprintable() else _json_shown(line) for line in lines))


def _json_shown(line: str) -> str:
    return "".join(_json_escape(ch) if is_hidden(ch) else ch for ch in line)


def _json_escape(ch: str) -> str:
    return json.dumps(ch)[1:-1] if ord(ch) > 0xFFFF else f"\\u{ord(ch):04x}"
