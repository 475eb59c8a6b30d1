"""Commands that check the store (or this host's cache) against the catalog and repair it:
verify, recover."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .app import App, pass_app
from .options import json_option
from .output import echo, echo_json, human_size, table

if TYPE_CHECKING:
    from .. import (
        CacheVerifyReport,
        CopiesReport,
        Finding,
        LostFile,
        RecoverReport,
        VerifyCategory,
        VerifyReport,
    )

__all__ = ["recover", "verify"]

deep_option = click.option(
    "--deep", is_flag=True, help="Download every object and compare md5 and size."
)


def _finding(f: Finding) -> dict[str, object]:
    return {"id": f.file_id, "path": f.path, "key": f.key, "reason": f.reason}


def _lost(f: LostFile) -> dict[str, object]:
    from ..verify import Finding

    return {**_finding(Finding(f.file_id, f.path, f.key, f.reason)), "hosts": list(f.hosts)}


def _category(c: VerifyCategory) -> dict[str, object]:
    return {
        "checked": c.checked,
        "ok": c.ok,
        "missing": [_finding(f) for f in c.missing],
        "corrupt": [_finding(f) for f in c.corrupt],
        "size_only": [_finding(f) for f in c.size_only],
        "archived": [_finding(f) for f in c.archived],
    }


def verify_doc(rep: VerifyReport) -> dict[str, object]:
    doc: dict[str, object] = {
        "deep": rep.deep,
        "include_archived": rep.include_archived,
        "archived_bytes": rep.archived_bytes,
        "ok": rep.ok,
        "published": _category(rep.published),
        "expired": _category(rep.expired),
    }
    if rep.copies is not None:  # several stores (docs/replicas.md)
        c = rep.copies
        doc["copies"] = {
            "numcopies": c.numcopies,
            "mincopies": c.mincopies,
            "checked": c.checked,
            "ok": c.ok,
            **{
                name: [
                    {
                        "id": f.file_id,
                        "path": f.path,
                        "store": f.store,
                        "key": f.key,
                        "reason": f.reason,
                    }
                    for f in found
                ]
                for name, found in (
                    ("missing", c.missing),
                    ("corrupt", c.corrupt),
                    ("unreachable", c.unreachable),
                    ("under", c.under),
                    ("below_floor", c.below_floor),
                )
            },
        }
    return doc


def _echo_verify(rep: VerifyReport) -> None:
    how = "deep: content md5 and size" if rep.deep else "shallow: size and ETag"
    echo(f"checked {rep.checked} files in the store ({how})")
    echo(
        table(
            ["STATE", "CHECKED", "OK", "MISSING", "CORRUPT"],
            [
                [name, c.checked, c.ok, len(c.missing), len(c.corrupt)]
                for name, c in (("published", rep.published), ("expired", rep.expired))
            ],
        )
    )
    problems = [("missing", f) for f in rep.missing] + [("corrupt", f) for f in rep.corrupt]
    if problems:
        echo()
        echo(
            table(
                ["PROBLEM", "ID", "PATH", "REASON"],
                [[what, f.file_id, f.path, f.reason] for what, f in problems],
            )
        )
    if rep.size_only:
        echo(
            f"{len(rep.size_only)} objects were checked by size only (their ETag is no md5: "
            "multipart uploads, or encrypted by the server); `repo verify --deep` reads them"
        )
    if rep.archived:
        echo(
            f"{len(rep.archived)} archived objects ({human_size(rep.archived_bytes)}) were "
            "checked by HEAD only: reading them is a billed retrieval (GLACIER and "
            "DEEP_ARCHIVE ones after `repo thaw`); `--include-archived` reads those readable"
        )
    if rep.copies is not None:
        _echo_copies(rep.copies)


def _echo_copies(c: CopiesReport) -> None:
    echo(
        f"copies: {c.checked} checked, {len(c.missing)} missing, {len(c.corrupt)} corrupt"
        + (f", {len(c.unreachable)} in stores not reached" if c.unreachable else "")
        + f"; {len(c.under)} {'version' if len(c.under) == 1 else 'versions'} under "
        f"numcopies {c.numcopies}, {len(c.below_floor)} below mincopies {c.mincopies}"
    )
    rows = [
        [what, f.file_id, f.path, f.store, f.reason]
        for what, found in (
            ("missing", c.missing),
            ("corrupt", c.corrupt),
            ("unreachable", c.unreachable),
            ("under", c.under),
            ("below floor", c.below_floor),
        )
        for f in found
    ]
    if rows:
        echo(table(["COPY", "ID", "PATH", "STORE", "REASON"], rows))


@click.command()
@deep_option
@click.option(
    "--cache", is_flag=True, help="Re-hash this host's cached copies instead of the store."
)
@click.option("--dry-run", is_flag=True, help="With --cache: report damage; change nothing.")
@click.option(
    "--include-archived",
    is_flag=True,
    help="With --deep: read archived versions too (billed retrievals; unrestored ones "
    "are checked by HEAD).",
)
@json_option()
@pass_app
def verify(
    app: App, deep: bool, cache: bool, dry_run: bool, include_archived: bool, as_json: bool
) -> None:
    """Check that every published file, and every expired one not yet purged, is in the
    store with the catalog's size and checksum. Without --cache, changes nothing.

    Without --deep, one request per object: the size, and the ETag where it is the md5
    (single-part uploads). Bit rot under an unchanged ETag, and damage to multipart
    objects, need --deep; archived versions are read only with --include-archived
    (billed retrievals). Exit status 1 if anything is missing or corrupt, or if a store
    holding copies could not be reached (its copies are listed, not counted as lost).

    With --cache, re-hash every copy in this host's cache instead (reads each cached
    byte; reads from the cache check only the size): damaged copies are evicted and
    downloaded again, verified (--dry-run: only reported). Exit status 1 if a damaged
    copy remains or could not be downloaded again.

    \b
    Examples:
      repo verify
      repo verify --deep --json
      repo verify --cache
    """
    if cache and deep:
        raise click.UsageError("--deep checks the store; --cache checks this host's cache")
    if dry_run and not cache:
        raise click.UsageError("--dry-run goes with --cache (`repo verify` changes nothing)")
    if include_archived and not deep:
        raise click.UsageError(
            "--include-archived goes with --deep (a shallow check reads nothing)"
        )
    if cache:
        with app.repo() as r:
            cached = r.verify_cache(repair=not dry_run)
        if as_json:
            echo_json(cache_doc(cached))
        else:
            _echo_cache(cached)
        if not cached.ok:
            sys.exit(1)
        return
    with app.repo() as r:
        rep = r.verify(deep=deep, include_archived=include_archived)
    if as_json:
        echo_json(verify_doc(rep))
    else:
        _echo_verify(rep)
        if not rep.ok:
            _echo_verify_error(rep)
    if not rep.ok:
        sys.exit(1)


def _echo_verify_error(rep: VerifyReport) -> None:
    c = rep.copies
    if c is None:
        echo(f"Error: {len(rep.missing)} missing and {len(rep.corrupt)} corrupt files", err=True)
        echo(
            "Try: `repo recover` on a host that has them cached (`repo show PATH` lists the hosts)",
            err=True,
        )
        return
    missing, corrupt = len(rep.missing) + len(c.missing), len(rep.corrupt) + len(c.corrupt)
    what = [f"{missing} missing and {corrupt} corrupt copies"] if missing or corrupt else []
    if c.below_floor:
        what.append(f"{len(c.below_floor)} versions below mincopies {c.mincopies}")
    if c.unreachable:
        stores = ", ".join(sorted({f.store for f in c.unreachable}))
        what.append(
            f"{len(c.unreachable)} copies not checked: store {stores} could not be reached "
            "(not counted as lost)"
        )
    echo(f"Error: {'; '.join(what)}", err=True)
    if missing or corrupt or c.below_floor:
        echo(
            "Try: `repo recover` rewrites them from good copies in other stores (then from "
            "this host's cache); `repo replicate` makes what is short of numcopies",
            err=True,
        )
    else:
        echo("Try: `repo verify` again once the store answers", err=True)


def cache_doc(rep: CacheVerifyReport) -> dict[str, object]:
    return {
        "host": rep.host,
        "repair": rep.repair,
        "ok": rep.ok,
        "checked": rep.checked,
        "intact": rep.intact,
        "bytes": rep.bytes,
        "damaged": [_finding(f) for f in rep.damaged],
        "evicted": [_finding(f) for f in rep.evicted],
        "redownloaded": [_finding(f) for f in rep.redownloaded],
        "failed": [_finding(f) for f in rep.failed],
        "unknown": rep.unknown,
    }


def _echo_cache(rep: CacheVerifyReport) -> None:
    echo(
        f"checked {rep.checked} cached files on {rep.host} ({human_size(rep.bytes)}): "
        f"{rep.intact} intact, {len(rep.damaged)} damaged"
    )
    if rep.damaged:
        echo("damaged (evicted):" if rep.repair else "damaged (left in place: --dry-run):")
        echo(table(["ID", "PATH", "REASON"], [[f.file_id, f.path, f.reason] for f in rep.damaged]))
    if rep.redownloaded:
        echo(f"downloaded {len(rep.redownloaded)} again from the store, verified")
    if rep.unknown:
        echo(f"{rep.unknown} cached files are not in the catalog; `repo cache prune` decides")
    if rep.failed:
        echo("could not be downloaded again:")
        echo(table(["ID", "PATH", "REASON"], [[f.file_id, f.path, f.reason] for f in rep.failed]))
        echo(f"Error: {len(rep.failed)} damaged cached files could not be replaced", err=True)
        echo("Try: `repo verify --deep` checks the store's copies", err=True)
    elif not rep.ok:
        echo(f"Error: {len(rep.damaged)} damaged cached files", err=True)
        echo("Try: `repo verify --cache` without --dry-run replaces them", err=True)


@click.command()
@deep_option
@click.option("--dry-run", is_flag=True, help="Report what would be recovered; change nothing.")
@json_option()
@pass_app
def recover(app: App, deep: bool, dry_run: bool, as_json: bool) -> None:
    """Repair missing or corrupt files in the store from this host's cache.

    Runs `repo verify` (--deep as there), then re-uploads each damaged file's cached copy
    on this host after re-hashing it; a corrupt object is deleted only once its content
    is read and fails the checksum. A cached copy that fails the checksum is never
    uploaded; it is evicted. Files still lost are listed with the other hosts the catalog
    says hold a copy: run `repo recover` there. Exit status 1 if anything is still lost.

    \b
    Examples:
      repo recover --dry-run
      repo recover --deep --json
    """
    with app.repo() as r:
        rep = r.recover(deep=deep, dry_run=dry_run)
    if as_json:
        doc: dict[str, object] = {
            "dry_run": rep.dry_run,
            "ok": rep.ok,
            "verify": verify_doc(rep.verify),
            "recovered": [_finding(f) for f in rep.recovered],
            "still_lost": [_lost(f) for f in rep.still_lost],
            "skipped_bad_cache": [_finding(f) for f in rep.skipped_bad_cache],
            "intact": [_finding(f) for f in rep.intact],
        }
        if rep.from_stores is not None:  # several stores (docs/replicas.md)
            doc["from_stores"] = [
                {"id": f.file_id, "path": f.path, "store": f.store, "key": f.key}
                for f in rep.from_stores
            ]
        echo_json(doc)
    else:
        _echo_recover(rep)
    if not rep.ok:
        sys.exit(1)


def _echo_recover(rep: RecoverReport) -> None:
    found = rep.verify
    how = "deep" if found.deep else "shallow"
    echo(
        f"checked {found.checked} files in the store ({how}): {len(found.missing)} missing, "
        f"{len(found.corrupt)} corrupt"
    )
    if found.copies is not None:
        c = found.copies
        echo(f"copies: {c.checked} checked, {len(c.missing)} missing, {len(c.corrupt)} corrupt")
    if rep.from_stores:
        verb = "would repair" if rep.dry_run else "repaired"
        many = "copy" if len(rep.from_stores) == 1 else "copies"
        echo(f"{verb} {len(rep.from_stores)} {many} from good copies in other stores:")
        echo(
            table(
                ["ID", "PATH", "STORE", "WAS"],
                [[f.file_id, f.path, f.store, f.reason] for f in rep.from_stores],
            )
        )
    verb = "would recover" if rep.dry_run else "recovered"
    if rep.recovered:
        echo(f"{verb} from this host's cache:")
        echo(table(["ID", "PATH", "WAS"], [[f.file_id, f.path, f.reason] for f in rep.recovered]))
    if rep.intact:
        echo(
            f"{len(rep.intact)} files flagged by their ETag have the right content; "
            "left as they are"
        )
    if rep.skipped_bad_cache:
        verb = "would evict" if rep.dry_run else "evicted"
        echo(f"{verb} damaged cached copies (never uploaded):")
        echo(
            table(
                ["ID", "PATH", "REASON"],
                [[f.file_id, f.path, f.reason] for f in rep.skipped_bad_cache],
            )
        )
    if rep.still_lost:
        echo("still lost:")
        echo(
            table(
                ["ID", "PATH", "HOSTS", "REASON"],
                [[f.file_id, f.path, ",".join(f.hosts) or "-", f.reason] for f in rep.still_lost],
            )
        )
        echo(f"Error: {len(rep.still_lost)} files are still lost", err=True)
        echo(
            "Try: `repo recover` on a host listed under HOSTS; with none, restore the objects "
            "from another copy (docs/disaster-recovery.md)",
            err=True,
        )
    elif not (rep.recovered or rep.intact or rep.from_stores):
        echo("nothing to recover")
