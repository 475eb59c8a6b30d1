"""A daily job: wait for yesterday's hourly files by tag, then read them.

Run it from cron after midnight (UTC):

    30 0 * * *  python examples/daily_consumer.py --tag sales --expect 24 --wait 3600

It finds the current versions tagged `sales` and `day=<yesterday>` (what
hourly_producer.py publishes), asking again every `--poll` seconds until `--expect`
files are there or `--wait` seconds have passed; then it reads them with pandas through
`repo://` (docs/fsspec.md), each pinned to the version found (`PATH@ID`), from this
host's verified cache, and prints the visits per region. Exit status 1 when the files
did not all arrive in time, so the scheduler can alert.

Needs pandas and the fsspec extra: `pip install pandas 's3-file-repo[fsspec]'`. For one
file, `repo wait --path PATH --timeout 1h` waits without polling (docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime, timedelta

import pandas as pd

import repo


def day_files(r: repo.Repo, tag: str, day: date) -> list[repo.RepoFile]:
    """The current versions carrying `tag` and the day's date tag, ordered by path."""
    return r.find(all=[tag, f"day={day.isoformat()}"])


def wait_for_day(
    r: repo.Repo, tag: str, day: date, *, expect: int, wait: float, poll: float
) -> list[repo.RepoFile]:
    """The day's files once `expect` of them are published, or what is there at the end
    of `wait` seconds. Says on stderr when it starts waiting."""
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        files = day_files(r, tag, day)
        if len(files) >= expect or time.monotonic() >= deadline:
            return files
        if not waiting:
            print(
                f"{tag} {day}: {len(files)} of {expect} files published; waiting up to {wait:g} s",
                file=sys.stderr,
                flush=True,
            )
            waiting = True
        r.rollback()  # end the read transaction, so the next find sees new commits
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def visits_by_region(files: list[repo.RepoFile]) -> dict[str, int]:
    """Sum the `visits` column per `region` over the files, read by pandas through
    `repo://`, each pinned to the version found (an `@` in a path is written `@@`)."""
    frames = [pd.read_csv(f"repo://{rf.path.replace('@', '@@')}@{rf.file_id}") for rf in files]
    totals = pd.concat(frames).groupby("region")["visits"].sum()
    return {str(region): int(visits) for region, visits in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="sales", help="what to read (default: sales)")
    parser.add_argument(
        "--day",
        type=date.fromisoformat,
        help="the day to read, e.g. 2026-11-25 (default: yesterday, UTC)",
    )
    parser.add_argument("--expect", type=int, default=24, help="files the day should have")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for them")
    parser.add_argument("--poll", type=float, default=60, help="seconds between looks")
    args = parser.parse_args(argv)
    day = args.day or datetime.now(UTC).date() - timedelta(days=1)
    try:
        with repo.Repo() as r:
            files = wait_for_day(
                r, args.tag, day, expect=args.expect, wait=args.wait, poll=args.poll
            )
            if len(files) < args.expect:
                print(
                    f"{args.tag} {day}: {len(files)} of {args.expect} files published",
                    file=sys.stderr,
                )
                return 1
            for region, visits in sorted(visits_by_region(files).items()):
                print(f"{region}\t{visits}")
    except repo.RepoError as exc:  # one line, and what to do: as the `repo` command
        hint = f"\nTry: {exc.hint}" if exc.hint else ""
        sys.exit(f"Error: {exc}{hint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
