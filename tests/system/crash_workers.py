"""Worker processes for tests/system/test_crashes.py::

    python -m crash_workers OP CONFIG EVENTS WORK SEED ITERATIONS ARGS_JSON

OP is one of `OPS`; CONFIG the repository's config file; EVENTS the file to log to; WORK
a scratch directory; SEED seeds the operation's choices; ARGS_JSON its arguments (a JSON
object, ``{"prefix": ...}`` and more). The test starts a worker ahead of time: it imports
everything, then waits for ``start`` on stdin before it touches the repository. Then it
opens what the operation needs and prepares its input, prints ``ready``, waits for ``go``,
and runs the operation's iteration in a bounded loop (at most ITERATIONS times, and never
past `DEADLINE_SECONDS`) until it is SIGKILLed. Every step is appended to the events file
as one line, ``<monotonic time> <event> <iteration> <detail>``, written straight to the
file (no buffer a kill could lose), so the test can tell where the kill landed. With
``"die_at"`` in its arguments a worker kills itself at that fixed point instead (`die`).

The test runs the same iterations in its own process (`prepare`, `iterate`) to measure
how long an operation takes and to re-run the one it interrupted.

Content is a function of the repository path (`content`): anyone can check any object
or cached copy without knowing which process wrote it.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import repo
from repo.paths import make_key, new_version_token

if TYPE_CHECKING:
    from collections.abc import Callable

#: A worker never runs longer than this (the test kills it long before).
DEADLINE_SECONDS = 60.0
KiB = 1024
MiB = 1024 * KiB
_SIZE = re.compile(r"\.s(\d+)\.bin$")


# ---------------------------------------------------------------- content


def data_path(stem: str, size: int) -> str:
    """A repository path whose content (`content`) has `size` bytes."""
    return f"{stem}.s{size}.bin"


@lru_cache(maxsize=64)
def content(path: str) -> bytes:
    """The one content every version of `path` has (seeded by the path itself)."""
    found = _SIZE.search(path)
    if found is None:
        raise ValueError(f"{path!r} is not a path made by data_path()")
    return random.Random(path).randbytes(int(found[1]))


# ----------------------------------------------------------------- events


class Events:
    """Appends ``<time> <event> <iteration> <detail>`` lines to a file, unbuffered."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, name: str, i: int = -1, detail: object = "") -> None:
        os.write(self._fd, f"{time.monotonic():.6f} {name} {i} {detail}\n".encode())

    def close(self) -> None:
        os.close(self._fd)


#: (monotonic time, event, iteration, detail)
Event = tuple[float, str, int, str]


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """The events a worker wrote (a line cut short by the kill is dropped)."""
    out: list[Event] = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        try:
            out.append(
                (float(parts[0]), parts[1], int(parts[2]), parts[3] if len(parts) > 3 else "")
            )
        except ValueError:
            continue
    return out


# --------------------------------------------------------------- the ops


@dataclass
class Ctx:
    """What one operation works with, in the worker or in the test."""

    config: str
    args: dict[str, Any]
    ev: Callable[..., None]
    seed: int
    work: Path
    session: repo.Repo | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def r(self) -> repo.Repo:
        assert self.session is not None
        return self.session

    @property
    def prefix(self) -> str:
        return str(self.args["prefix"])

    def rng(self, i: int) -> random.Random:
        """Iteration `i`'s random choices: the same in the worker and in a re-run."""
        return random.Random(f"{self.seed}:{i}")


def tune_multipart(r: repo.Repo, part_size: int) -> None:
    """Small parts, so a multipart upload has many and takes long enough to interrupt."""
    store: Any = r.store
    if hasattr(store, "part_size"):
        store.part_size = part_size
        store.multipart_threshold = part_size


def _prepare_nothing(ctx: Ctx) -> None:
    pass


def _add(ctx: Ctx, i: int) -> None:
    size = ctx.rng(i).randint(16 * KiB, 512 * KiB)
    path = data_path(f"{ctx.prefix}/add/i{i}", size)
    src = ctx.work / f"add-{i}"
    src.write_bytes(content(path))
    ctx.ev("begin", i, path)
    ctx.r.add(
        path,
        src,
        tags=["crash", f"it{i}"],
        period="day",
        publish=True,
        progress=lambda n: ctx.ev("sent", i, n),
    )
    ctx.ev("commit", i)
    ctx.r.commit()
    ctx.ev("end", i)


class _TreeProgress:
    def __init__(self, ev: Callable[..., None], i: int) -> None:
        self.ev, self.i = ev, i

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.ev("tree", self.i, total_files)

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        self.ev("file", self.i)


TREE_FILES = 16


def _add_tree(ctx: Ctx, i: int) -> None:
    base = f"{ctx.prefix}/tree/i{i}"
    src = ctx.work / f"tree-{i}"
    src.mkdir(exist_ok=True)
    rng = ctx.rng(i)
    for j in range(TREE_FILES):
        name = data_path(f"f{j:02}", rng.randint(1, 32 * KiB))
        (src / name).write_bytes(content(f"{base}/{name}"))
    ctx.ev("begin", i, base)
    ctx.r.add_tree(
        src, prefix=base, tags=["crash"], publish=True, workers=4, progress=_TreeProgress(ctx.ev, i)
    )
    ctx.ev("commit", i)
    ctx.r.commit()
    ctx.ev("end", i)


def _prepare_upload(ctx: Ctx) -> None:
    tune_multipart(ctx.r, int(ctx.args["part_size"]))


def _upload(ctx: Ctx, i: int) -> None:
    """A large version: its row committed first, then uploaded (multipart on S3) and
    published, so a kill in the upload leaves a committed version to finish."""
    size = ctx.rng(i).randint(int(ctx.args["min_size"]), int(ctx.args["max_size"]))
    path = data_path(f"{ctx.prefix}/big/i{i}", size)
    ctx.ev("begin", i, path)
    rf = ctx.r.add_file(path)
    with rf.open("wb") as fp:
        fp.write(content(path))
    ctx.r.commit()
    ctx.ev("row", i, rf.file_id)
    dies = ctx.args.get("die_at") == "part"

    def progress(n: int) -> None:
        ctx.ev("part", i, n)
        if dies:
            die()

    rf.upload(progress=progress)
    ctx.ev("uploaded", i)
    rf.publish()
    ctx.ev("commit", i)
    ctx.r.commit()
    ctx.ev("end", i)


def finish_uploads(r: repo.Repo, prefix: str) -> list[repo.RepoFile]:
    """Upload and publish this host's committed versions under `prefix` that a kill
    left without their upload (the re-run of an interrupted upload)."""
    done = []
    for rf in r.list(f"{prefix}/big/*", state="unpublished"):
        if rf.uploaded or rf.origin != r.host:
            continue
        rf.upload().publish()
        r.commit()
        done.append(rf)
    return done


PUBLISH_PATHS = 3
PUBLISH_VERSIONS = 12


def _prepare_publish(ctx: Ctx) -> None:
    """Every path has a current version, and a queue of uploaded versions to publish."""
    r = ctx.r
    paths = [data_path(f"{ctx.prefix}/pub/p{j}", 100 + j) for j in range(PUBLISH_PATHS)]
    for path in paths:
        r.add_file(path).touch(content(path)).publish()
    queue = [
        r.add_file(paths[k % PUBLISH_PATHS]).touch(content(paths[k % PUBLISH_PATHS])).upload()
        for k in range(PUBLISH_VERSIONS)
    ]
    r.commit()
    ctx.state["queue"] = [rf.file_id for rf in queue]


def _publish(ctx: Ctx, i: int) -> None:
    file_id = ctx.state["queue"][i]
    ctx.ev("begin", i, file_id)
    ctx.r.file(file_id).publish()
    ctx.ev("commit", i)
    ctx.r.commit()
    ctx.ev("end", i)


TAG_FILES = 2


def _prepare_tag(ctx: Ctx) -> None:
    r = ctx.r
    made = [
        r.add_file(p).touch(content(p)).publish()
        for p in (data_path(f"{ctx.prefix}/tag/f{j}", 64 + j) for j in range(TAG_FILES))
    ]
    r.commit()
    ctx.state["files"] = [rf.file_id for rf in made]


def tag_target(files: list[int], i: int) -> int:
    return files[i % len(files)]


def _tag(ctx: Ctx, i: int) -> None:
    """File tags ``k<i>-a`` and ``k<i>-b``, path tag ``k<i>-p``, date tags; and the
    previous iteration's ``-a`` tag removed: one commit."""
    files = ctx.state["files"]
    ctx.ev("begin", i)
    rf = ctx.r.file(tag_target(files, i))
    rf.tag(f"k{i}-a", f"k{i}-b")
    rf.tag_path(f"k{i}-p")
    rf.tag_date(datetime.now(UTC), type="hour")
    if i > 0:
        ctx.r.file(tag_target(files, i - 1)).untag(f"k{i - 1}-a")
    ctx.ev("commit", i)
    ctx.r.commit()
    ctx.ev("end", i)


def commit_paths(prefix: str, i: int) -> dict[str, str]:
    return {
        "shared": data_path(f"{prefix}/commit/shared", 2 * KiB),
        "kept": data_path(f"{prefix}/commit/i{i}/kept", 3 * KiB + i),
        "pub": data_path(f"{prefix}/commit/i{i}/pub", 4 * KiB + i),
    }


def commit_tag(prefix: str, i: int) -> str:
    return f"{prefix}-c{i}"


def _commit(ctx: Ctx, i: int) -> None:
    """One transaction of several changes: a new current version of a shared path, a new
    unpublished version, a new published one with a path tag, the previous iteration's
    published one expired; every new version tagged `commit_tag`."""
    r = ctx.r
    p = commit_paths(ctx.prefix, i)
    ctx.ev("begin", i)
    mark = commit_tag(ctx.prefix, i)
    r.add_file(p["shared"]).touch(content(p["shared"])).publish().tag(mark)
    r.add_file(p["kept"]).touch(content(p["kept"])).upload().tag(mark)
    r.add_file(p["pub"]).touch(content(p["pub"])).publish().tag(mark).tag_path(f"{mark}-path")
    if i > 0:
        previous = r.get_file(commit_paths(ctx.prefix, i - 1)["pub"])
        if previous is not None:
            previous.expire()
    ctx.ev("commit", i)
    r.commit()
    ctx.ev("end", i)


GC_JUNK = 40
GC_EXPIRED = 3
GC_ORPHANS = 8


def prepare_garbage(r: repo.Repo, prefix: str, work: Path, rng: random.Random) -> dict[str, Any]:
    """Unpublished versions, expired versions and orphaned objects, all eligible for a
    garbage collection with TTLs of 0; and published versions it must keep."""
    junk = work / "junk"
    junk.mkdir(parents=True, exist_ok=True)
    base = f"{prefix}/gc/junk"
    for j in range(GC_JUNK):
        name = data_path(f"j{j:03}", rng.randint(1, 2 * KiB))
        (junk / name).write_bytes(content(f"{base}/{name}"))
    r.add_tree(junk, prefix=base, workers=8)
    kept = []
    for j in range(GC_EXPIRED):
        path = data_path(f"{prefix}/gc/kept{j}", 200 + j)
        r.add_file(path).touch(content(path)).publish()
        kept.append(r.add_file(path).touch(content(path)).publish().key)
    r.commit()
    orphans = []
    for j in range(GC_ORPHANS):
        path = data_path(f"{prefix}/gc/orphan{j}", 300 + j)
        src = work / f"orphan-{j}"
        src.write_bytes(content(path))
        key = make_key(r.store.key_prefix, path, new_version_token())
        r.store.put_file(key, src)
        orphans.append(key)
    return {"kept": kept, "orphans": orphans}


def _prepare_gc(ctx: Ctx) -> None:
    ctx.state.update(prepare_garbage(ctx.r, ctx.prefix, ctx.work, ctx.rng(-1)))


def _gc(ctx: Ctx, i: int) -> None:
    ctx.ev("begin", i)
    report = ctx.r.gc(orphans=True)
    counts = [report.unpublished.count, report.expired.count, report.orphans.count]
    ctx.ev("end", i, json.dumps(counts))


def die() -> None:
    """Crash right here (the xfail tests' fixed points), as a SIGKILL would."""
    os.kill(os.getpid(), signal.SIGKILL)


def _prepare_backup(ctx: Ctx) -> None:
    if ctx.args.get("die_at") == "manifest":
        # Die as the manifest goes up: every table of the backup is in the store.
        store: Any = ctx.r.backups.store
        put = store.put_file

        def put_or_die(key: str, source: Path, **kwargs: Any) -> Any:
            if key.endswith("/manifest.json"):
                die()
            return put(key, source, **kwargs)

        store.put_file = put_or_die


def _backup(ctx: Ctx, i: int) -> None:
    ctx.ev("begin", i)
    report = ctx.r.backup()
    ctx.ev("end", i, report.name)


def _prepare_restore(ctx: Ctx) -> None:
    if ctx.args.get("die_at") == "journal":
        # Die once the backup's tables are loaded and committed, before the change
        # journal is replayed.
        from repo import restore

        def read_entries_or_die(*_args: Any) -> Any:
            die()

        restore.read_entries = read_entries_or_die  # type: ignore[attr-defined,assignment]


def _restore(ctx: Ctx, i: int) -> None:
    """Restore the catalog into the (fresh) database of the ``target`` configuration."""
    ctx.ev("begin", i)
    report = repo.restore_catalog(str(ctx.args["target"]))
    ctx.ev("end", i, report.backup)


def _prepare_download(ctx: Ctx) -> None:
    found = ctx.r.get_file(str(ctx.args["path"]))
    assert found is not None, "the file to download is not published"
    ctx.state["file"] = found


def _download(ctx: Ctx, i: int) -> None:
    """Empty this host's cache, then read the file (downloaded into the cache)."""
    ctx.ev("begin", i)
    ctx.r.clear_cache()
    ctx.ev("cleared", i)
    dies = ctx.args.get("die_at") == "chunk"

    def progress(n: int) -> None:
        ctx.ev("chunk", i, n)
        if dies:
            die()

    with open(os.devnull, "wb") as sink:
        ctx.state["file"].write_to(sink, progress=progress)
    ctx.ev("end", i)


@dataclass(frozen=True)
class Op:
    prepare: Callable[[Ctx], None]
    iterate: Callable[[Ctx, int], None]
    #: False for restore, which works from a configuration alone.
    needs_repo: bool = True


OPS: dict[str, Op] = {
    "add": Op(_prepare_nothing, _add),
    "add_tree": Op(_prepare_nothing, _add_tree),
    "upload": Op(_prepare_upload, _upload),
    "publish": Op(_prepare_publish, _publish),
    "tag": Op(_prepare_tag, _tag),
    "commit": Op(_prepare_nothing, _commit),
    "gc": Op(_prepare_gc, _gc),
    "backup": Op(_prepare_backup, _backup),
    "restore": Op(_prepare_restore, _restore, needs_repo=False),
    "download": Op(_prepare_download, _download),
}


# ----------------------------------------------------------------- worker


def _handshake() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


USAGE = "python -m crash_workers OP CONFIG EVENTS WORK SEED ITERATIONS ARGS_JSON"


def main(argv: list[str]) -> None:
    if len(argv) != 7 or argv[0] not in OPS:
        raise SystemExit(f"usage: {USAGE} (OP one of {', '.join(OPS)})")
    name, config, events_path, work, seed, iterations, args = argv
    op = OPS[name]
    # Started ahead of time: touch nothing until told to (the test is still checking
    # the previous trial's repository). No line at all: the test is gone.
    if sys.stdin.readline().strip() != "start":
        return
    events = Events(events_path)
    ctx = Ctx(config=config, args=json.loads(args), ev=events, seed=int(seed), work=Path(work))
    ctx.work.mkdir(parents=True, exist_ok=True)
    if op.needs_repo:
        ctx.session = repo.Repo(config)
    try:
        op.prepare(ctx)
        _handshake()
        deadline = time.monotonic() + DEADLINE_SECONDS
        for i in range(int(iterations)):
            if time.monotonic() > deadline:
                break
            op.iterate(ctx, i)
        events("done")
    finally:
        if ctx.session is not None:
            ctx.session.close()
        events.close()


if __name__ == "__main__":
    main(sys.argv[1:])
