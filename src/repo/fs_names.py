"""The path part of ``repo://`` URLs (docs/fsspec.md): a repository path, with ``@@`` for
each ``@`` in it, and optionally one pin, a single ``@`` followed by a file id or a tag.

A valid repository path may hold any printable character, ``@`` included, so a pin
marker has to be escaped where it means itself: with ``@`` doubled in paths, every
URL reads one way, and every name the filesystem returns opens the same version.
"""

from __future__ import annotations

from .errors import UsageError

__all__ = ["PROTOCOL", "glob_escape", "is_file_id", "parse_url_path", "url_path"]

PROTOCOL = "repo"


def parse_url_path(text: str) -> tuple[str, str | None, int]:
    """(repository path, pin, where the pin sits in the path) from the path part of a
    ``repo://`` URL.

    ``@@`` stands for an ``@`` of the path; a single ``@`` starts the pin, which runs to
    the end of its segment and applies to the whole path: ``lake@v1/part-0.parquet``
    and ``lake/part-0.parquet@v1`` are the same version. Digits pin a file id, anything
    else a tag.
    """
    out: list[str] = []
    pin: str | None = None
    at = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "@" and text[i + 1 : i + 2] == "@":
            out.append("@")
            i += 2
            continue
        if ch == "@":
            end = text.find("/", i)
            end = len(text) if end == -1 else end
            if pin is not None or end == i + 1 or not out or out[-1] == "/":
                raise UsageError(
                    f"{PROTOCOL}://{text} needs one pin, not empty, after a path segment",
                    hint="write 'PATH@12' for file 12, 'PATH@TAG' for a tag, '@@' for an '@'",
                )
            pin, at = text[i + 1 : end], len("".join(out))
            i = end
            continue
        out.append(ch)
        i += 1
    path = "".join(out)
    return path, pin, (at if pin is not None else len(path))


def url_path(path: str, pin: str | int | None = None, at: int | None = None) -> str:
    """The path part of a ``repo://`` URL for repository `path`, pinned to `pin` after
    its first `at` characters (by default at the end)."""
    if pin is None:
        return path.replace("@", "@@")
    at = len(path) if at is None else at
    return f"{path[:at].replace('@', '@@')}@{pin}{path[at:].replace('@', '@@')}"


def glob_escape(text: str) -> str:
    """`text` as a glob pattern that matches only itself."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text)


def is_file_id(pin: str) -> bool:
    """Does `pin` name a file id (ASCII digits; other scripts' digits make a tag)?"""
    return pin.isascii() and pin.isdigit()
