"""Arbitrary paths through the whole stack: rejected cleanly, or round-tripped exactly."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import repo

if TYPE_CHECKING:
    from collections.abc import Iterator

# Text that leans on the awkward cases: separators, dots, controls, unicode forms.
awkward = st.lists(
    st.one_of(
        st.sampled_from(["/", ".", "..", "\\", "~", " ", "%", "_", "*", "'", "\x00", "\n", "a"]),
        st.sampled_from(["é", "e\u0301", "Å", "A\u030a", "ß", "中", "\u202e", "\U0001f600"]),
        st.characters(codec="utf-8"),
    ),
    max_size=25,
).map("".join)


@pytest.fixture
def e2e_repo(tmp_path: Path) -> Iterator[repo.Repo]:
    store = tmp_path / "store"
    cfg = {
        "store": store.as_uri(),
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "local_root": str(tmp_path / "local"),
        "host_name": "fuzz",
    }
    r = repo.Repo(config=cfg)
    yield r
    r.close()


def _inside(child: Path, parent: Path) -> bool:
    return os.path.commonpath([os.path.realpath(child), os.path.realpath(parent)]) == str(
        os.path.realpath(parent)
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=awkward)
def test_any_path_is_rejected_cleanly_or_round_trips_exactly(
    e2e_repo: repo.Repo, path: str
) -> None:
    r = e2e_repo
    before = r.status()
    rejected: repo.InvalidPathError | None = None
    try:
        rf = r.add_file(path)
    except repo.InvalidPathError as exc:
        rejected = exc
    if rejected is not None:
        event("rejected")
        assert "\n" not in str(rejected)
        assert r.status() == before  # nothing written
        return
    event("accepted")
    expected = unicodedata.normalize("NFC", path)
    assert rf.path == expected
    data = ("content of " + expected).encode("utf-8", "surrogatepass")
    rf.touch(data).publish()
    r.commit()
    got = r.get_file(path)
    assert got is not None
    assert got.file_id == rf.file_id
    assert got.path == expected
    assert got.read_bytes() == data
    root = Path(r.config.local_root)
    assert _inside(got.local_path, root / "cache")
    assert _inside(rf.staging_path, root / "staging")
    assert r.store.key_prefix + "data/" + expected in rf.key
    # The object sits inside the store's directory, whatever the path looked like.
    assert _inside(Path(r.store.bucket) / rf.key, Path(r.store.bucket))
