"""A nightly job: retention, then back the catalog up, collect garbage, verify the store,
prune the cache.

Run it from cron once a night on one host (the cache step is per host: run
`repo cache prune` on the others):

    15 2 * * *  python examples/nightly_maintenance.py

The order matters. With `--retain TAG`, retention comes first: the published versions
tagged TAG that a grandfather-father-son schedule does not keep (`--keep-daily`,
`--keep-weekly`, `--keep-monthly`; see docs/retention.md) are expired. The backup comes
next: garbage collection purges an expired version
only once `backups_before_purge` backups were taken since it expired, so that a restored
catalog never names an object that is gone. Then `gc` (with `--orphans`, objects no
version refers to), then `verify` (every published version's object present, with the
catalog's size and md5; `--deep` downloads and re-hashes them all), then this host's
cache. Exit status 1 when the check found a missing or damaged object: the restore and
recovery runbooks are in docs/disaster-recovery.md.
"""

from __future__ import annotations

import argparse
import sys

import repo


def maintain(
    r: repo.Repo, *, orphans: bool, deep: bool, retain: str | None = None, keep: int = 7
) -> bool:
    """One night's maintenance, reported as it goes; whether the store checked out whole.
    With `retain`, the versions tagged so are first thinned to the last `keep` days, the
    last `keep` ISO weeks' and the last `keep` months' newest."""
    if retain is not None:
        schedule = r.expire_by_schedule(
            tags=[retain], keep_daily=keep, keep_weekly=keep, keep_monthly=keep
        )
        r.commit()
        print(
            f"retention: {len(schedule.kept)} kept, {len(schedule.expired)} expired"
            f" (tag {retain}, {keep} days, weeks and months)"
        )
    backup = r.backup()
    print(
        f"backup {backup.name}: {sum(backup.rows.values())} rows, {backup.bytes} bytes,"
        f" {len(backup.deleted_backups)} old backups removed"
    )
    gc = r.gc(orphans=orphans)
    print(
        f"gc: purged {gc.unpublished.count} unpublished, {gc.expired.count} expired,"
        f" {gc.orphans.count} orphans; {gc.waiting_for_backups} waiting for backups"
    )
    check = r.verify(deep=deep)
    for finding in [*check.missing, *check.corrupt]:
        print(f"verify: {finding.path} (id {finding.file_id}): {finding.reason}")
    print(
        f"verify: {check.published.checked} published, {check.expired.checked} expired"
        f" checked, {'ok' if check.ok else 'PROBLEMS FOUND'}"
    )
    cache = r.prune_cache()
    print(
        f"cache: {cache.dropped_expired + cache.dropped_purged} old copies dropped,"
        f" {cache.evicted_for_space} evicted for space"
    )
    return check.ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orphans", action="store_true", help="also delete orphaned objects")
    parser.add_argument("--deep", action="store_true", help="download and re-hash everything")
    parser.add_argument("--retain", metavar="TAG", help="apply retention to versions tagged TAG")
    parser.add_argument(
        "--keep", type=int, default=7, help="days, weeks and months retention keeps (default 7)"
    )
    args = parser.parse_args(argv)
    try:
        with repo.Repo() as r:
            ok = maintain(
                r, orphans=args.orphans, deep=args.deep, retain=args.retain, keep=args.keep
            )
            return 0 if ok else 1
    except repo.RepoError as exc:  # one line, and what to do: as the `repo` command
        hint = f"\nTry: {exc.hint}" if exc.hint else ""
        sys.exit(f"Error: {exc}{hint}")


if __name__ == "__main__":
    sys.exit(main())
