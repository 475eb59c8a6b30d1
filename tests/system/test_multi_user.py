"""Two users on one host (issue 21, findings 5 and 6): what one user's repository leaves
on the local disk is theirs alone, and nothing another user planted under their
`local_root` is used.

The victim is this test process; the other user is a system user made for the module
(``useradd``, so these tests need root and skip without it) and acts through
``subprocess.run(..., user=, group=, extra_groups=[])``. Files are planted either by that
user or by root and handed to them with ``chown``: what counts is whose they are. The
victim's files live in a directory every user may enter (as a home directory is), so
what stops the other user is the mode of the victim's own files and directories.

The modes are checked under a permissive umask too: they must not depend on it.
"""

from __future__ import annotations

import io
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import repo
from conftest import CliRun, write_config
from repo.local_owner import MARKER

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = b"the victim's secret content\n"


# ----------------------------------------------------------------- the other user


@dataclass(frozen=True)
class OtherUser:
    """A second unix user of this host."""

    name: str
    uid: int
    gid: int

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`argv` run as this user (and only their own group)."""
        return subprocess.run(
            list(argv),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def owns(self, *paths: Path) -> None:
        """Hand `paths` (links themselves, not what they name) to this user."""
        for path in paths:
            os.lchown(path, self.uid, self.gid)


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    if os.geteuid() != 0:
        pytest.skip("making a second unix user needs root")
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    if useradd is None or userdel is None:
        pytest.skip("useradd and userdel are needed to make a second unix user")
    name = f"repo-other-{secrets.token_hex(4)}"
    made = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd could not make a user: {made.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        yield OtherUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run([userdel, name], capture_output=True, check=False)


@pytest.fixture
def home() -> Iterator[Path]:
    """The victim's directory: every user may enter it, as a home directory."""
    path = Path(tempfile.mkdtemp(prefix="repo-multi-user-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The usual umask, and the most permissive one: neither may widen what is made."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def config(home: Path, host: str = "victim", **extra: Any) -> dict[str, Any]:
    """The victim's configuration: everything under `home`, nothing made beforehand."""
    return {
        "local_root": str(home / f"local-{host}"),
        "store": (home / "store").as_uri(),
        "database": f"sqlite:///{home}/catalog/catalog.db",
        "host_name": host,
        **extra,
    }


def publish(home: Path, path: str = "docs/secret.txt", data: bytes = SECRET) -> repo.RepoFile:
    """Publish `data` at `path` from the writer host; its copy stays in its cache."""
    with repo.Repo(config(home, "writer")) as r:
        return r.add(path, io.BytesIO(data), publish=True)


def read_as_reader(home: Path, path: str = "docs/secret.txt") -> bytes:
    with repo.Repo(config(home, "reader")) as r:
        return r.current(path).read_bytes()


def one_line(exc: repo.RepoError) -> str:
    assert "\n" not in exc.message
    assert exc.hint is not None
    assert "\n" not in exc.hint
    return exc.message


def modes(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything under `root` (and `root`: ".")."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


# ------------------------------------------------- finding 5: private by default on disk


def test_another_user_can_read_nothing_the_victim_keeps_on_disk(
    home: Path, other_user: OtherUser, umask_022: None
) -> None:
    published = publish(home)
    with repo.Repo(config(home, "writer")) as r:
        draft = r.add_file("docs/draft.txt").touch(SECRET)  # a staging copy, not uploaded
        r.commit()
        readable = {
            "cached copy": r.cache.cache_path(published.key),
            "staging copy": draft.staging_path,
            "stored object": home / "store" / published.key,
            "stored object's sidecar": home / "store" / ".repo-meta" / f"{published.key}.json",
            "catalog": home / "catalog" / "catalog.db",
            "catalog's write-ahead log": home / "catalog" / "catalog.db-wal",
            "local_root's marker": home / "local-writer" / MARKER,
        }
        for what, path in readable.items():
            assert path.is_file(), what
            got = other_user.run("cat", str(path))
            assert got.returncode != 0, f"another user read the {what} ({path})"
            assert "Permission denied" in got.stderr, what
        for what, path in {
            "local_root": home / "local-writer",
            "cache directory": r.cache.cache_dir,
            "store": home / "store",
            "catalog's directory": home / "catalog",
        }.items():
            got = other_user.run("ls", str(path))
            assert got.returncode != 0, f"another user listed the {what} ({path})"
    assert other_user.run("ls", str(home)).returncode == 0  # the home itself is open


def test_everything_under_local_root_is_private_whatever_the_umask(home: Path, umask: int) -> None:
    with repo.Repo(config(home)) as r:
        kept = r.add("a/b/kept.txt", io.BytesIO(b"kept"), publish=True)  # a stream: cached
        r.add("small.txt", io.BytesIO(b"small"), publish=True)
        r.commit()
        r.backup()  # scratch files under tmp/
        cache, staging = r.cache.cache_dir, r.session.staging.directory
        cached = r.cache.cache_path(kept.key)
    root = home / "local-victim"
    found = modes(root)
    for directory in (root, cache, staging, root / "tmp"):
        assert found[str(directory.relative_to(root)) if directory != root else "."] == 0o700
    for name, mode in modes(cache).items():
        path = cache / name
        assert mode == (0o700 if path.is_dir() else 0o400), f"{path}: {mode:o}"
    assert modes(cache)[str(cached.relative_to(cache))] == 0o400
    assert found[MARKER] == 0o600


def test_versions_being_written_are_private_whatever_the_umask(home: Path, umask: int) -> None:
    with repo.Repo(config(home)) as r:
        draft = r.add_file("drafts/one.txt").touch(b"being written")
        second = r.add_file("drafts/two.txt")
        with second.open("w") as out:
            out.write("also")
        for path in (draft.staging_path, second.staging_path):
            assert path.stat().st_mode & 0o777 == 0o600, path
            assert path.parent.stat().st_mode & 0o777 == 0o700, path.parent
        r.rollback()


def test_a_directory_store_and_a_sqlite_catalog_are_private_whatever_the_umask(
    home: Path, umask: int
) -> None:
    with repo.Repo(config(home)) as r:
        r.add("a/b/one.txt", io.BytesIO(b"one"), publish=True)
        r.add_file("two.txt").touch(b"two").publish()
        r.commit()
        r.backup()  # into the store
        found = modes(home / "store")
        catalog = modes(home / "catalog")
    assert found["."] == 0o700  # made by the store: it did not exist
    for name, mode in found.items():
        path = home / "store" / name
        if path.is_dir():
            expected = 0o700
        elif name.startswith(".repo-meta/"):
            expected = 0o600
        else:
            expected = 0o400
        assert mode == expected, f"{path}: {mode:o}"
    assert catalog == {
        ".": 0o700,
        "catalog.db": 0o600,
        "catalog.db-wal": 0o600,
        "catalog.db-shm": 0o600,
    }


def test_a_set_group_id_directory_shares_with_its_group_what_it_gives_it(
    home: Path, umask_022: None
) -> None:
    """The one way to share: a store root, or a catalog's directory, made set-group-ID
    by whoever sets up the sharing; its group gets what the directory gives it."""
    for shared in (home / "store", home / "catalog"):
        shared.mkdir()
        os.chown(shared, -1, os.getgid())
        shared.chmod(0o2750 if shared.name == "store" else 0o2770)
    with repo.Repo(config(home)) as r:
        r.add("a/one.txt", io.BytesIO(b"one"), publish=True)
        r.commit()
        rf = r.current("a/one.txt")
    store = modes(home / "store")
    directories = [m for name, m in store.items() if (home / "store" / name).is_dir()]
    assert set(directories) == {0o2750}
    assert str(Path(rf.key).parent) in store
    assert store[rf.key] == 0o440  # read-only, and readable by the group
    assert store[f".repo-meta/{rf.key}.json"] == 0o640
    assert modes(home / "catalog")["catalog.db"] == 0o660  # a group that writes the catalog
    assert modes(home / "local-victim")["."] == 0o700  # never local_root


def test_directories_an_older_version_left_open_are_made_private(
    home: Path, umask_022: None
) -> None:
    with repo.Repo(config(home)) as r:
        r.add("x.txt", io.BytesIO(b"x"), publish=True)
    root = home / "local-victim"
    for name in ("cache", "staging", "tmp"):
        (root / name).chmod(0o755)  # as an older version made them under umask 022
    with repo.Repo(config(home)) as r:
        assert r.current("x.txt").read_bytes() == b"x"
    found = modes(root)
    assert (found["cache"], found["staging"], found["tmp"]) == (0o700, 0o700, 0o700)


# --------------------------------------------------------- finding 6: trust nobody else


def test_a_local_root_made_by_another_user_is_refused(home: Path, other_user: OtherUser) -> None:
    home.chmod(0o1777)  # a shared place, such as /tmp
    root = home / "local-victim"
    assert other_user.run("mkdir", str(root)).returncode == 0
    with pytest.raises(repo.LocalDiskError) as caught:
        repo.Repo(config(home))
    assert one_line(caught.value) == (
        f"local_root {root} belongs to another user (uid {other_user.uid}): not used"
    )
    assert list(root.iterdir()) == []  # nothing written into it


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777], ids=["777", "775", "1777"])
def test_a_local_root_others_may_write_is_refused(home: Path, mode: int) -> None:
    root = home / "local-victim"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(repo.LocalDiskError) as caught:
        repo.Repo(config(home))
    assert one_line(caught.value) == (
        f"local_root {root} may be written by other users (mode {mode:o}): not used"
    )
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "planted"),
    [("cache", "dir"), ("staging", "dir"), ("tmp", "dir"), ("cache", "link"), ("tmp", "link")],
)
def test_a_directory_of_another_user_in_local_root_is_refused(
    home: Path, other_user: OtherUser, name: str, planted: str
) -> None:
    with repo.Repo(config(home)) as r:
        r.add("x.txt", io.BytesIO(b"x"), publish=True)
    root = home / "local-victim"
    theirs = home / "theirs"
    theirs.mkdir()
    other_user.owns(theirs)
    shutil.rmtree(root / name)
    if planted == "dir":
        (root / name).mkdir()
    else:
        (root / name).symlink_to(theirs, target_is_directory=True)
    other_user.owns(root / name)
    with pytest.raises(repo.LocalDiskError) as caught:
        repo.Repo(config(home))
    problem = (
        f"belongs to another user (uid {other_user.uid})"
        if planted == "dir"
        else "is a symbolic link"
    )
    assert one_line(caught.value) == f"local_root's directory {root / name} {problem}: not used"
    assert list(theirs.iterdir()) == []


@pytest.mark.parametrize("planted", ["file", "link"])
def test_a_same_size_copy_planted_in_the_cache_is_never_served(
    home: Path, other_user: OtherUser, planted: str
) -> None:
    rf = publish(home)
    assert read_as_reader(home) == SECRET
    cached = home / "local-reader" / "cache" / rf.key
    forged = b"x" * len(SECRET)  # the size a hit checks
    cached.unlink()
    if planted == "file":
        cached.write_bytes(forged)
    else:
        theirs = home / "forged"
        theirs.write_bytes(forged)
        other_user.owns(theirs)
        cached.symlink_to(theirs)
    other_user.owns(cached)
    with pytest.raises(repo.UntrustedDataError) as caught:
        read_as_reader(home)
    problem = (
        f"belongs to another user (uid {other_user.uid})"
        if planted == "file"
        else "is a symbolic link"
    )
    assert one_line(caught.value) == f"cached copy {cached} {problem}: not used"


@pytest.mark.parametrize("holding", ["a forged copy", "nothing"])
def test_a_linked_directory_planted_in_the_cache_is_never_followed(
    home: Path, other_user: OtherUser, holding: str
) -> None:
    """Whether the link would make a hit (reading a forged copy) or a download (writing
    the victim's content into the other user's directory), it is refused."""
    rf = publish(home)
    assert read_as_reader(home) == SECRET
    cache = home / "local-reader" / "cache"
    top = rf.key.split("/", 1)[0]
    theirs = home / "theirs"
    shutil.copytree(cache / top, theirs)  # the same tree of directories, and the copy
    if holding == "nothing":
        (theirs / rf.key.split("/", 1)[1]).unlink()
    else:
        (theirs / rf.key.split("/", 1)[1]).write_bytes(b"x" * len(SECRET))
    for directory, _dirs, files in os.walk(theirs):
        other_user.owns(Path(directory), *(Path(directory) / f for f in files))
    shutil.rmtree(cache / top)
    (cache / top).symlink_to(theirs, target_is_directory=True)
    other_user.owns(cache / top)
    before = modes(theirs)
    with pytest.raises(repo.UntrustedDataError) as caught:
        read_as_reader(home)
    assert one_line(caught.value) == f"cache directory {cache / top} is a symbolic link: not used"
    assert modes(theirs) == before  # nothing written through the link


def test_a_marker_planted_by_another_user_is_refused(home: Path, other_user: OtherUser) -> None:
    with repo.Repo(config(home)) as r:
        r.add("x.txt", io.BytesIO(b"x"), publish=True)
    marker = home / "local-victim" / MARKER
    # Naming this very store, under another identity: it would be taken over as ours.
    forged = marker.read_text().replace('"repository_id": "', '"repository_id": "0')
    marker.unlink()
    marker.write_text(forged)
    other_user.owns(marker)
    with pytest.raises(repo.UntrustedDataError) as caught:
        repo.Repo(config(home))
    assert one_line(caught.value) == (
        f"{marker} belongs to another user (uid {other_user.uid}): not used"
    )
    assert marker.read_text() == forged


def test_the_command_line_refuses_a_planted_copy_in_one_line(
    home: Path, other_user: OtherUser, tmp_path: Path
) -> None:
    rf = publish(home)
    cli = CliRun(write_config(tmp_path / "reader.json", config(home, "reader")), tmp_path)
    assert cli("cat", "docs/secret.txt").stdout_bytes == SECRET
    cached = home / "local-reader" / "cache" / rf.key
    cached.unlink()
    cached.write_bytes(b"x" * len(SECRET))
    other_user.owns(cached)
    result = cli("cat", "docs/secret.txt")
    assert result.exit_code != 0
    assert result.stdout_bytes == b""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"Error: cached copy {cached} belongs to another user (uid {other_user.uid}): not used"
    )
    assert lines[1].startswith("Try: ")
    assert len(lines) == 2
