"""The S3 store's archival requests on moto: a move's checks, a restore's answers."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

import pytest

from repo import StateError, VerificationError
from repo.stores.base import Archivable
from repo.stores.s3 import S3Store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.s3servers import MotoS3Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
KEY = "data/x.bin~01zzzzzzzzzzzzzzzzzzzzzzzz"


@pytest.fixture
def store(moto_server: MotoS3Server) -> Iterator[S3Store]:
    bucket = moto_server.create_bucket("t-" + uuid.uuid4().hex[:16])
    s = S3Store(
        f"s3://{bucket}",
        endpoint_url=moto_server.endpoint_url,
        access_key=moto_server.access_key,
        secret_key=moto_server.secret_key,
        region=moto_server.region,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    try:
        yield s
    finally:
        s.close()


def test_a_multipart_objects_one_request_copy_is_checked_by_its_md5_etag(
    store: S3Store, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"m" * (6 * MiB))
    put = store.put_file(KEY, big, metadata={"repo-path": "x.bin"})
    assert put.multipart
    assert "-" in (store.head(KEY).etag or "")
    assert isinstance(store, Archivable)
    # One CopyObject request makes a single-part object: its ETag is the md5 again.
    assert store.move_to_class(KEY, "GLACIER", md5=put.md5, size=put.size) == "etag"
    state = store.archive_state(KEY)
    assert (state.storage_class, state.restoring, state.readable) == ("GLACIER", None, False)
    assert store.head(KEY).metadata == {"repo-path": "x.bin"}


def test_under_sse_kms_the_move_is_checked_by_its_pinned_source_and_size(
    moto_server: MotoS3Server,
) -> None:
    bucket = moto_server.create_bucket("t-" + uuid.uuid4().hex[:16])
    kms = S3Store(
        f"s3://{bucket}",
        endpoint_url=moto_server.endpoint_url,
        access_key=moto_server.access_key,
        secret_key=moto_server.secret_key,
        region=moto_server.region,
        sse="aws:kms",
        trust_server_checks=True,
    )
    try:
        put = kms.put_bytes(KEY, b"sealed")
        # An SSE-KMS ETag is no md5: the size and the source pinned by its ETag vouch.
        assert kms.move_to_class(KEY, "DEEP_ARCHIVE", md5=put.md5, size=put.size) == "source"
        assert kms.archive_state(KEY).storage_class == "DEEP_ARCHIVE"
    finally:
        kms.close()


def test_an_object_that_is_not_the_catalogs_is_never_moved(store: S3Store) -> None:
    put = store.put_bytes(KEY, b"the real content")
    wrong = hashlib.md5(b"something else", usedforsecurity=False).hexdigest()
    with pytest.raises(VerificationError, match="not the catalog's md5"):
        store.move_to_class(KEY, "DEEP_ARCHIVE", md5=wrong, size=put.size)
    with pytest.raises(VerificationError, match="not the catalog's 3"):
        store.move_to_class(KEY, "DEEP_ARCHIVE", md5=put.md5, size=3)
    assert store.archive_state(KEY).storage_class is None


def test_moving_again_is_a_check_only_and_a_restore_of_a_standard_object_is_refused(
    store: S3Store,
) -> None:
    put = store.put_bytes(KEY, b"abc")
    with pytest.raises(StateError, match="in no class that needs a restore"):
        store.request_restore(KEY, days=1, tier="Standard")
    assert store.move_to_class(KEY, "GLACIER", md5=put.md5, size=put.size) == "etag"
    assert store.move_to_class(KEY, "GLACIER", md5=put.md5, size=put.size) == "etag"
    with pytest.raises(StateError, match="moving it between archival classes"):
        store.move_to_class(KEY, "DEEP_ARCHIVE", md5=put.md5, size=put.size)
    assert store.request_restore(KEY, days=1, tier="Bulk") is True
    assert store.request_restore(KEY, days=2, tier="Bulk") is False  # restored: extended
    state = store.archive_state(KEY)
    assert (state.storage_class, state.restoring, state.readable) == ("GLACIER", False, True)


def test_a_refusal_whose_error_document_breaks_off_is_asked_again(
    moto_server: MotoS3Server, tmp_path: Path
) -> None:
    # The move's last check is a 1-byte GET that S3 refuses (403 InvalidObjectState) for
    # an archived object. Cut short, that refusal has no code: it is asked again, never
    # taken for "access denied".
    from harness.proxy import FaultProxy

    bucket = moto_server.create_bucket("t-" + uuid.uuid4().hex[:16])
    with FaultProxy(moto_server.endpoint_url) as proxy:
        s = S3Store(
            f"s3://{bucket}",
            endpoint_url=proxy.endpoint_url,
            access_key=moto_server.access_key,
            secret_key=moto_server.secret_key,
            region=moto_server.region,
        )
        try:
            data = b"archived bytes"
            put = s.put_bytes(KEY, data)
            proxy.truncate_responses(method="GET", query=None)
            assert s.move_to_class(KEY, "GLACIER", md5=put.md5, size=put.size) == "etag"
            assert s.archive_state(KEY).storage_class == "GLACIER"
        finally:
            s.close()
