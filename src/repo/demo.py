"""A short tour of the library, run by ``repo demo`` (the README's first command)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .repository import Repo

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["run_demo"]


def run_demo(echo: Callable[[str], None], *, config: str | None = None) -> None:
    """Add, tag, publish, find and read back files, printing each step."""
    now = datetime.now(UTC)
    with Repo(config) as r:
        echo(f"catalog: {r.config.masked_database_url()}")
        echo(f"store:   {r.store.url}")
        echo(f"host:    {r.host}  (cache in {r.config.local_root})")

        first = r.add_file("demo/reports/daily.csv")
        first.touch("day,visits\n")
        first.touch(f"{now:%Y-%m-%d},100\n")
        first.publish()
        first.tag("demo", "report")
        first.tag_date(now, type="day")
        echo(f"added and published {first.path} (file {first.file_id}, md5 {first.md5})")

        notes = r.add_file("demo/notes.txt")
        with notes.open("w") as fp:
            fp.write("written through a file object\n")
        notes.publish()
        notes.tag("demo")
        notes.tag_path("team=ops")
        echo(f"added and published {notes.path} (file {notes.file_id}), path tag team=ops")
        r.commit()

        second = r.add_file("demo/reports/daily.csv")
        second.touch("day,visits\n")
        second.touch(f"{now:%Y-%m-%d},150\n")
        second.publish()
        second.tag("demo", "report", "revised")
        second.tag_date(now, type="day")
        r.commit()
        echo(
            f"published a new version of {second.path} (file {second.file_id}); "
            f"file {first.file_id} is now {first.refresh().state}"
        )

        found = r.find(all=["demo", "report"], exclude=["draft"])
        echo(
            "find(all=['demo', 'report'], exclude=['draft']) -> "
            + ", ".join(f"{f.path} (file {f.file_id})" for f in found)
        )
        found = r.find(any=["team=ops", "revised"])
        echo("find(any=['team=ops', 'revised']) -> " + ", ".join(f.path for f in found))

        current = r.get_file("demo/reports/daily.csv")
        assert current is not None  # noqa: S101 - published just above (for mypy)
        with current.open() as fp:
            echo(f"read back {current.path}: {fp.read()!r}")
        echo(f"verified local copy: {current.local_path}")
        echo(
            "history of demo/reports/daily.csv: "
            + ", ".join(f"file {v.file_id} {v.state}" for v in r.history(current.path))
        )
        echo("listing demo/*: " + ", ".join(f.path for f in r.list("demo/*")))
        counts = r.status()
        echo(
            "catalog now holds: "
            + ", ".join(
                f"{state} {n} files ({size} bytes)" for state, (n, size) in sorted(counts.items())
            )
        )
