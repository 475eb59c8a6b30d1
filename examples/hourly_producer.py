"""An hourly job: write this hour's CSV, add it date-tagged, publish it.

Run it from cron at a few minutes past each hour:

    5 * * * *  python examples/hourly_producer.py --tag sales

Each run adds `reports/sales/<YYYY-MM-DDTHH>.csv` as a new version tagged `sales` and
`hour=`, `day=`, `week=` and `month=` of the hour it covers (UTC), and publishes it, so a
consumer finds a day's files with `find(all=["sales", "day=2026-11-25"])`. Re-running an
hour publishes a new version of the same path: the previous one expires and garbage
collection purges it later.

The CSV here is made up; a real job writes what it measured. `--hour` covers another
hour than the one that just ended (a catch-up run, or a test).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from datetime import UTC, datetime, timedelta

import repo


def last_full_hour(now: datetime) -> datetime:
    """The start of the hour before `now` (UTC): the hour a run at HH:05 reports on."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def hour_report(hour: datetime) -> bytes:
    """This hour's rows: one per region (made up, the same for the same hour)."""
    rng = random.Random(hour.isoformat())  # noqa: S311 - sample data, not a secret
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["hour", "region", "visits"])
    for region in ("eu", "us", "apac"):
        writer.writerow([hour.strftime("%Y-%m-%dT%H:00Z"), region, rng.randint(0, 1000)])
    return out.getvalue().encode()


def publish_hour(r: repo.Repo, hour: datetime, tag: str) -> repo.RepoFile:
    """Add the hour's report as a new version of its path, date-tagged, and publish it."""
    path = f"reports/{tag}/{hour:%Y-%m-%dT%H}.csv"
    return r.add(
        path, io.BytesIO(hour_report(hour)), tags=[tag], when=hour, period="hour", publish=True
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="sales", help="what the report is (default: sales)")
    parser.add_argument(
        "--hour",
        type=datetime.fromisoformat,
        help="the hour to report on, e.g. 2026-11-25T18 (default: the last)",
    )
    args = parser.parse_args(argv)
    hour = (
        args.hour.replace(tzinfo=args.hour.tzinfo or UTC)
        if args.hour
        else last_full_hour(datetime.now(UTC))
    )
    try:
        with repo.Repo() as r:  # the configured repository; commits when the block ends
            rf = publish_hour(r, hour, args.tag)
            print(f"published {rf.path} (id {rf.file_id}, {rf.size} bytes)")
    except repo.RepoError as exc:  # one line, and what to do: as the `repo` command
        hint = f"\nTry: {exc.hint}" if exc.hint else ""
        sys.exit(f"Error: {exc}{hint}")


if __name__ == "__main__":
    main()
