"""Loading whole tables into PostgreSQL fast (a restore): bare tables, rows by COPY, then
each key, index and foreign key built once, on two connections at a time.

A table that keeps its keys and indexes while millions of rows arrive updates each of
them row by row, and logs every one of those updates; an index built afterwards sorts
the rows once and logs whole pages (what ``pg_restore`` does). What a table carries is
read from PostgreSQL's own catalog after the schema is created (`deferrable`), never
listed here, so a column or index added to `schema` is taken off and put back too.

The load and the builds run as tasks (`run_tasks`) on their own connections, each task
in its own transaction: the tables must therefore be committed, empty, before the
tasks start. The caller commits them with a marker that makes the catalog untrusted
until the restore finishes (`dump.RESTORE_MARKER`), so a load that stops half way is
never taken for a catalog. The tasks commit with ``synchronous_commit`` off: the
restore's last commit is synchronous, and flushing it flushes everything logged before.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text

from .connection import Database
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from sqlalchemy import Connection

__all__ = ["WORKERS", "Built", "Task", "deferrable", "plan", "run_tasks", "strip"]

logger = logging.getLogger(__name__)

#: Connections loading and building at once. Two keep two cores busy (the client's
#: share is small: decompressing, and handing blocks to COPY).
WORKERS = 2
#: Per task transaction. A foreign key is checked with one join of the two tables: with
#: the ids of a million versions hashed in memory rather than in batches on disk it
#: takes half the CPU. (``maintenance_work_mem`` stays as it is: index builds sorting
#: in larger runs took more CPU here, not less.) At most `WORKERS` tasks at once.
_SETTINGS = {
    "work_mem": "64MB",
    "synchronous_commit": "off",
}


@dataclass(frozen=True, slots=True)
class Built:
    """A key, index or foreign key of a table: taken off for the load, built after it."""

    table: str  #: the table's name in the schema (unquoted)
    name: str  #: the key's, index's or foreign key's name
    kind: str  #: "key" (primary key or unique constraint), "index" or "foreign key"
    build: tuple[str, ...]  #: statements that build it (from PostgreSQL's catalog)
    drop: str
    refers_to: str | None = None  #: a foreign key's referenced table


# Keys and foreign keys, from pg_constraint. A key is built as a unique index and then
# attached to its constraint (USING INDEX): building the index needs only a SHARE lock,
# so another index of the same table can be built beside it.
_CONSTRAINTS = """
SELECT r.relname, c.conname, c.contype, c.conrelid::regclass::text, quote_ident(c.conname),
       pg_get_constraintdef(c.oid), pg_get_indexdef(c.conindid), f.relname,
       c.condeferrable, c.condeferred
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid
LEFT JOIN pg_class f ON f.oid = c.confrelid
WHERE c.conrelid = ANY(CAST(:tables AS regclass[])) AND c.contype IN ('p', 'u', 'f')
ORDER BY r.relname, c.conname
"""
# Indexes that back no constraint (exclusion constraints' indexes stay, with them).
_INDEXES = """
SELECT r.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indexrelid::regclass::text
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class r ON r.oid = x.indrelid
WHERE x.indrelid = ANY(CAST(:tables AS regclass[]))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid
                    AND c.contype IN ('p', 'u', 'x'))
ORDER BY r.relname, i.relname
"""


def deferrable(conn: Connection, tables: Sequence[str]) -> list[Built]:
    """Every key, index and foreign key of `tables` (names on the search path), as
    PostgreSQL defines them now."""
    found: list[Built] = []
    params = {"tables": list(tables)}
    for row in conn.execute(text(_CONSTRAINTS), params):
        table, name, kind, target, quoted, definition, index, refers, deferrable, deferred = row
        drop = f"ALTER TABLE {target} DROP CONSTRAINT {quoted}"
        if kind == "f":
            build = (f"ALTER TABLE {target} ADD CONSTRAINT {quoted} {definition}",)
            found.append(Built(table, name, "foreign key", build, drop, refers))
            continue
        what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
        timing = " DEFERRABLE" if deferrable else ""
        timing += " INITIALLY DEFERRED" if deferred else ""
        attach = f"ALTER TABLE {target} ADD CONSTRAINT {quoted} {what} USING INDEX {quoted}"
        found.append(Built(table, name, "key", (index, attach + timing), drop))
    for table, name, definition, qualified in conn.execute(text(_INDEXES), params):
        found.append(Built(table, name, "index", (definition,), f"DROP INDEX {qualified}"))
    return found


def strip(conn: Connection, built: Iterable[Built]) -> None:
    """Drop them: foreign keys first (they lean on the keys), then keys, then indexes."""
    order = {"foreign key": 0, "key": 1, "index": 2}
    for item in sorted(built, key=lambda b: order[b.kind]):
        conn.execute(text(item.drop))


@dataclass
class Task:
    """One step of a load, run in its own transaction once the tasks it `needs` are done."""

    name: str
    run: Callable[[Connection], None]
    needs: frozenset[str] = frozenset()
    #: Rough work (rows): of the tasks ready, the largest starts first.
    size: int = 0
    what: str = ""  #: for errors: "restoring table files", ...
    seconds: float = field(default=0.0, compare=False)


def run_tasks(url: str, tasks: Sequence[Task], workers: int = WORKERS) -> None:
    """Run `tasks` on `workers` connections, each as soon as what it needs is done.

    The first failure stops the rest (tasks already running finish or fail) and is
    raised; what the finished tasks committed stays, for the caller's marker to guard.
    """
    names = {t.name for t in tasks}
    unknown = {n for t in tasks for n in t.needs} - names
    if unknown:
        raise ValueError(f"tasks need unknown tasks {sorted(unknown)}")
    pending = sorted(tasks, key=lambda t: -t.size)
    done: set[str] = set()
    running: set[str] = set()
    failure: list[BaseException] = []
    cond = threading.Condition()

    def next_task() -> Task | None:
        with cond:
            while True:
                if failure or not pending:
                    return None
                for task in pending:
                    if task.needs <= done:
                        pending.remove(task)
                        running.add(task.name)
                        return task
                if not running:  # nothing can ever become ready: a cycle
                    stuck = ", ".join(t.name for t in pending)
                    failure.append(ValueError(f"tasks wait on each other: {stuck}"))
                    cond.notify_all()
                    return None
                cond.wait()

    def work() -> None:
        db = Database(url)
        try:
            while (task := next_task()) is not None:
                started = time.perf_counter()
                try:
                    with translate_errors(task.what or task.name):
                        conn = db.begin_write()
                        for name, value in _SETTINGS.items():
                            conn.execute(
                                text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value}
                            )
                        task.run(conn)
                    db.commit()
                except BaseException as exc:
                    db.rollback()
                    with cond:
                        failure.append(exc)
                        running.discard(task.name)
                        cond.notify_all()
                    return
                task.seconds = time.perf_counter() - started
                logger.debug("%s: %.2f s", task.name, task.seconds)
                with cond:
                    running.discard(task.name)
                    done.add(task.name)
                    cond.notify_all()
        finally:
            db.close()

    threads = [
        threading.Thread(target=work, name=f"repo-load-{i}", daemon=True)
        for i in range(max(1, min(workers, len(tasks))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failure:
        raise failure[0]


def plan(
    loads: Mapping[str, tuple[Callable[[Connection], None], int]],
    built: Sequence[Built],
    derived: Mapping[str, tuple[Callable[[Connection], None], Sequence[str]]],
) -> list[Task]:
    """The tasks of a load: `loads` (table -> (fill it, its rows)), `derived` (table ->
    (fill it from others, the tables it reads)), then every item of `built`.

    Ordering, and the locks behind it: a table's indexes (keys' included) are built
    side by side once it is filled (``CREATE INDEX`` takes a SHARE lock, which another
    one does not block); its keys are attached to their indexes once all of them are
    built (a brief ACCESS EXCLUSIVE lock, taken when no build of that table can wait on
    it); a table's foreign keys are added, one task per table, once both ends have
    their keys attached. A derived table is filled once what it reads is loaded.
    """
    sizes = {name: size for name, (_fill, size) in loads.items()}
    tasks: list[Task] = []
    for name, (fill, size) in loads.items():
        tasks.append(Task(f"load {name}", fill, size=size, what=f"restoring table {name}"))
    for name, (fill, reads) in derived.items():
        needs = frozenset(f"load {r}" for r in reads if r in loads)
        # About half the work of indexing its largest source, which comes first.
        size = max((sizes.get(r, 0) for r in reads), default=0) // 2
        sizes[name] = size
        tasks.append(Task(f"derive {name}", fill, needs, size, f"deriving table {name}"))
    filled = {name: f"load {name}" for name in loads} | {n: f"derive {n}" for n in derived}
    by_table: dict[str, list[Built]] = {}
    for item in built:
        by_table.setdefault(item.table, []).append(item)
    for table, items in by_table.items():
        ready = frozenset({filled[table]}) if table in filled else frozenset()
        size = sizes.get(table, 0)
        indexes = [i for i in items if i.kind != "foreign key"]
        for item in indexes:
            statements = item.build[:1] if item.kind == "key" else item.build
            tasks.append(
                Task(
                    f"index {item.name}",
                    _statements(statements),
                    ready,
                    # A backup lists rows in primary key order: sorting for a key is
                    # often sorting sorted rows, the cheapest kind.
                    size // 2 if item.kind == "key" else size,
                    f"building index {item.name} of table {table}",
                )
            )
        keys = [i for i in items if i.kind == "key"]
        tasks.append(
            Task(
                f"keys {table}",
                _statements([s for k in keys for s in k.build[1:]]),
                frozenset(f"index {i.name}" for i in indexes) | ready,
                0,
                f"adding the keys of table {table}",
            )
        )
    for table, items in by_table.items():
        foreign = [i for i in items if i.kind == "foreign key"]
        if not foreign:
            continue
        ends = {table} | {i.refers_to for i in foreign if i.refers_to}
        tasks.append(
            Task(
                f"foreign keys {table}",
                _statements([s for i in foreign for s in i.build]),
                frozenset(f"keys {t}" for t in ends if t in by_table),
                sizes.get(table, 0),
                f"checking the references of table {table}",
            )
        )
    return tasks


def _statements(statements: Sequence[str]) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for statement in statements:
            # Statements PostgreSQL wrote for its own objects, never from input.
            conn.execute(text(statement))

    return run
