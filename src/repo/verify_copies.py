"""`repo verify` with several stores: every recorded copy checked in its store, and every
version held against the policy (`numcopies`, `mincopies`; docs/replicas.md).

The version's own copy is checked by `repo.verify` as with one store; here each verified
copy the catalog lists in another store (or a rewritten own copy) gets the same check,
and the good copies of each version are counted. A store that fails as a whole (an
outage, a refusal) is reported unreachable for each copy it holds, never missing or
corrupt, and the others are still checked. Nothing is changed anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import StoreError, UntrustedDataError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor

    from .catalog import FileRecord
    from .session import Session
    from .stores import Store

__all__ = ["CopiesReport", "CopyFinding", "check_copies", "reachable"]


@dataclass(frozen=True, slots=True)
class CopyFinding:
    """One copy (or one version, for the policy lists) with something to say about it."""

    file_id: int
    path: str
    store: str
    key: str
    reason: str


@dataclass
class CopiesReport:
    """The copies of every version checked, by store, and the versions under policy."""

    numcopies: int
    mincopies: int
    #: Copies checked in their stores (own copies included).
    checked: int = 0
    missing: list[CopyFinding] = field(default_factory=list)
    corrupt: list[CopyFinding] = field(default_factory=list)
    #: Copies whose store could not be asked (an outage): neither good nor lost.
    unreachable: list[CopyFinding] = field(default_factory=list)
    #: Versions with fewer good copies than `numcopies` (`store` lists the good ones).
    under: list[CopyFinding] = field(default_factory=list)
    #: Versions with fewer good copies than `mincopies`: act now.
    below_floor: list[CopyFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.below_floor or self.unreachable)


def check_copies(
    session: Session,
    batch: Sequence[FileRecord],
    own: Sequence[tuple[str, str]],
    *,
    check: Callable[[Store, FileRecord], tuple[str, str]],
    pool: Executor,
    report: CopiesReport,
) -> None:
    """Check the copies of `batch` (whose own copies' outcomes are `own`) into `report`,
    each with `check` (`repo.verify.check_object`) in `pool`."""
    copies = session.catalog.replicas_of(rec.file_id for rec in batch)
    session.catalog.end_read()
    jobs: list[tuple[FileRecord, str, Store, FileRecord]] = []
    good: dict[int, list[str]] = {rec.file_id: [] for rec in batch}
    for rec, (outcome, reason) in zip(batch, own, strict=True):
        rows = {c.store: c for c in copies.get(rec.file_id, [])}
        home = session.stores.home_name(rec)
        if home is not None and outcome == "unreachable":
            report.unreachable.append(CopyFinding(rec.file_id, rec.path, home, rec.key, reason))
        if home is not None and home not in rows:
            report.checked += 1  # its damage, if any, is in the own copies' categories
            if outcome not in ("missing", "corrupt", "elsewhere", "unreachable"):
                good[rec.file_id].append(home)
        for name in session.config.store_names:
            copy = rows.get(name)
            if copy is None or not copy.verified:
                continue
            try:
                store = session.locate_copy(rec, copy)
            except UntrustedDataError as exc:
                report.corrupt.append(
                    CopyFinding(rec.file_id, rec.path, name, copy.key, exc.message)
                )
                continue
            as_copy = rec._replace(key=copy.key, verified_with=copy.verified_with)
            jobs.append((rec, name, store, as_copy))
    outcomes = pool.map(lambda job: reachable(check, job[2], job[3]), jobs)
    for (rec, name, _store, as_copy), (outcome, reason) in zip(jobs, outcomes, strict=True):
        report.checked += 1
        finding = CopyFinding(rec.file_id, rec.path, name, as_copy.key, reason)
        if outcome == "missing":
            report.missing.append(finding)
        elif outcome == "corrupt":
            report.corrupt.append(finding)
        elif outcome == "unreachable":
            report.unreachable.append(finding)
        else:
            good[rec.file_id].append(name)
    for rec in batch:
        names = good[rec.file_id]
        held = ", ".join(names) or "none"
        if len(names) < report.numcopies:
            why = f"{len(names)} of {report.numcopies} copies good"
            report.under.append(CopyFinding(rec.file_id, rec.path, held, rec.key, why))
        if len(names) < report.mincopies:
            why = f"{len(names)} good copies, below mincopies {report.mincopies}"
            report.below_floor.append(CopyFinding(rec.file_id, rec.path, held, rec.key, why))


def reachable(
    check: Callable[[Store, FileRecord], tuple[str, str]], store: Store, rec: FileRecord
) -> tuple[str, str]:
    """`check(store, rec)`, or ``("unreachable", why)`` when the store fails as a whole (an
    outage is no verdict on the copy: it must not be taken for a lost one)."""
    try:
        return check(store, rec)
    except StoreError as exc:
        return "unreachable", exc.message
