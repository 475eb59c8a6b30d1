"""Naming versions: a new one, by id, by path, by tags or by a glob on paths."""

from __future__ import annotations

import fnmatch
import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .catalog.schema import STATES
from .errors import NotFoundError, UsageError
from .file import RepoFile
from .names import check_path_characters
from .paths import make_key, new_version_token, unique_path, validate_path
from .tags import validate_tags

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from .session import Session

__all__ = [
    "STATES",
    "by_id",
    "count",
    "current",
    "find",
    "history",
    "iter_find",
    "matching",
    "new_version",
    "newest",
    "published",
    "tags_of",
]


def new_version(session: Session, path: str | None = None) -> RepoFile:
    """A new, unpublished version of `path` (a unique path is made when omitted)."""
    clean = validate_path(path if path is not None else unique_path())
    store = session.stores.for_path(clean)  # `placement`, else the default store
    key_prefix = store.key_prefix
    clean = validate_path(clean, key_prefix=key_prefix)
    check_path_characters(clean)  # a new name: no format characters (old ones stay usable)
    record = session.catalog.add_file(
        path=clean,
        bucket=store.bucket,
        key=make_key(key_prefix, clean, new_version_token()),
        origin=session.host,
        created_at=datetime.now(UTC),
    )
    return RepoFile(session, record)


def published(session: Session, path: str) -> RepoFile | None:
    """The current (published) version of `path`, or None."""
    record = session.catalog.current(validate_path(path))
    return RepoFile(session, record) if record is not None else None


def by_id(session: Session, file_id: int) -> RepoFile:
    """A version by its id; `NotFoundError` if there is none."""
    if isinstance(file_id, bool) or not isinstance(file_id, int):
        raise UsageError(f"file id must be an integer, got {file_id!r}")
    return RepoFile(session, session.catalog.get(file_id))


def find(
    session: Session,
    *,
    any: Iterable[str] = (),
    all: Iterable[str] = (),
    exclude: Iterable[str] = (),
    pattern: str | None = None,
    published: bool = True,
    limit: int | None = None,
) -> list[RepoFile]:
    """Versions with every tag in `all`, one in `any`, none in `exclude`, and (given a
    `pattern`) a path matching it, by path; with no tags, every current version. Only
    the first `limit`, if given, are read."""
    _check_limit(limit)
    if pattern is not None:
        found = iter_find(session, any=any, all=all, exclude=exclude, pattern=pattern,
                          published=published)  # fmt: skip
        return list(itertools.islice(found, limit))
    records = session.catalog.find(
        any_tags=validate_tags(any),
        all_tags=validate_tags(all),
        exclude=validate_tags(exclude),
        published=published,
        limit=limit,
    )
    return [RepoFile(session, r) for r in records]


#: `iter_find` reads pages of this many versions first, then ten times more each time
#: up to `LAST_PAGE`: a reader that stops early reads little, one that reads all pays
#: a few queries more than `find`.
FIRST_PAGE = 100
LAST_PAGE = 10_000


def iter_find(
    session: Session,
    *,
    any: Iterable[str] = (),
    all: Iterable[str] = (),
    exclude: Iterable[str] = (),
    pattern: str | None = None,
    published: bool = True,
) -> Iterator[RepoFile]:
    """`find`'s answer in its order, read a page at a time as the iteration goes on.

    Each page is a read of its own that starts after the last version of the one
    before: a version published or tagged meanwhile shows up if its path comes later.
    """
    query = {
        "any_tags": validate_tags(any),
        "all_tags": validate_tags(all),
        "exclude": validate_tags(exclude),
        "published": published,
    }
    if pattern is not None:
        _check_pattern(pattern)
    return _pages(session, query, pattern)


def _pages(session: Session, query: dict[str, Any], pattern: str | None) -> Iterator[RepoFile]:
    after: tuple[str, int] | None = None
    size = FIRST_PAGE
    while True:
        records = session.catalog.find(**query, limit=size, after=after)
        for r in records:
            if pattern is None or fnmatch.fnmatchcase(r.path, pattern):
                yield RepoFile(session, r)
        if len(records) < size:
            return
        after = (records[-1].path, records[-1].file_id)
        size = min(size * 10, LAST_PAGE)


def count(
    session: Session,
    *,
    any: Iterable[str] = (),
    all: Iterable[str] = (),
    exclude: Iterable[str] = (),
    pattern: str | None = None,
    published: bool = True,
) -> int:
    """How many versions `find` would return; counted in the catalog, without reading
    them, unless a `pattern` needs their paths."""
    if pattern is not None:
        found = iter_find(session, any=any, all=all, exclude=exclude, pattern=pattern,
                          published=published)  # fmt: skip
        return sum(1 for _ in found)
    return session.catalog.count_found(
        any_tags=validate_tags(any),
        all_tags=validate_tags(all),
        exclude=validate_tags(exclude),
        published=published,
    )


def _check_limit(limit: object) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError(f"limit must be a whole number of files (0 or more), got {limit!r}")


def matching(session: Session, pattern: str = "*", state: str = "published") -> list[RepoFile]:
    """Versions whose path matches the glob `pattern`, in `state` (or ``all``)."""
    _check_pattern(pattern)
    if state != "all" and state not in STATES:
        raise UsageError(
            f"unknown state {state!r}", hint="use unpublished, published, expired or all"
        )
    states = STATES if state == "all" else (state,)
    return [RepoFile(session, r) for r in session.catalog.list_current(pattern, states=states)]


def _check_pattern(pattern: object) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise UsageError("pattern must be a non-empty string such as 'reports/*'")


def history(session: Session, path: str) -> list[RepoFile]:
    """Every version of `path`, newest first."""
    return [RepoFile(session, r) for r in session.catalog.history(validate_path(path))]


def newest(session: Session, path: str) -> RepoFile:
    """The most recently added version of `path`, in any state."""
    versions = session.catalog.history(validate_path(path))
    if not versions:
        raise NotFoundError(f"no file at path {path!r}", hint="see `repo list --state all`")
    return RepoFile(session, versions[0])


def current(session: Session, path: str) -> RepoFile:
    """The published version of `path`; `NotFoundError` (saying why) if there is none."""
    found = published(session, path)
    if found is not None:
        return found
    versions = session.catalog.history(validate_path(path))
    if not versions:
        raise NotFoundError(f"no file at path {path!r}", hint="see `repo list --state all`")
    latest = versions[0]
    raise NotFoundError(
        f"{path!r} has no published version (newest is file {latest.file_id}, {latest.state})",
        hint=f"publish it with `repo publish {latest.file_id}`"
        if latest.state == "unpublished"
        else f"see `repo show {path}`",
    )


def tags_of(session: Session, files: Iterable[RepoFile]) -> dict[int, list[str]]:
    """Every tag (own and the path's) of each file, by file id, in one query per batch."""
    return session.catalog.tags_of_many([f.file_id for f in files])
