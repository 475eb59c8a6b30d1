"""One bucket on one server: its settings and the two clients that reach it.

obstore carries the data path (far less CPU per request than boto3); boto3 does what
obstore cannot: a part's Content-MD5, conditional multipart completion, and, behind a
proxy, ranges from servers that answer them with status 200 (`s3_http_ranges` takes
them otherwise). Why, with the retry and timeout settings
spelled out: docs/s3-store.md.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from obstore.store import S3Store as _ObStore

from .s3_errors import translate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..errors import RepoError

__all__ = ["EXPRESS_SUFFIX", "S3Connection", "opaque_encryption"]

logger = logging.getLogger(__name__)

#: The name of every S3 Express One Zone directory bucket ends so; its ETags are no md5s.
EXPRESS_SUFFIX = "--x-s3"
#: ``x-amz-server-side-encryption`` values under which an ETag is no md5 of the content.
_OPAQUE_SSE = ("aws:kms", "aws:kms:dsse")


def opaque_encryption(answer: Mapping[str, Any]) -> bool:
    """Does a boto3 answer (HEAD, PUT, UploadPart) say the object's ETag is no md5?"""
    return bool(
        answer.get("ServerSideEncryption") in _OPAQUE_SSE or answer.get("SSECustomerAlgorithm")
    )


class S3Connection:
    """Settings, the obstore client (`ob`), and a boto3 client made on first use."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        timeout: float,
        sse: str | None,
        sse_kms_key_id: str | None,
        boto_connections: int,
        trust_server_checks: bool = False,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.timeout = timeout
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self._access_key = access_key
        self._secret_key = secret_key
        self._boto_connections = boto_connections
        #: True once the server has answered a ranged GET with status 200 (rclone).
        self.ranges_answered_200 = False
        #: Are objects' ETags no md5s? Known from the configuration (SSE-KMS, an S3
        #: Express directory bucket), or learned from the server's first such answer.
        self.opaque_etags = sse == "aws:kms" or bucket.endswith(EXPRESS_SUFFIX)
        #: Where ETags are no md5s: trust the server's check of what we sent instead of
        #: reading each upload back (``s3_upload_check: server``; right for AWS only).
        self.trust_server_checks = trust_server_checks
        self.ob = self._make_obstore()
        self._boto: Any = None
        self._boto_lock = threading.Lock()

    def etag_is_md5(self, key: str) -> bool:
        """Is the ETag of the object at `key` an md5 of its content, by the server's answer?

        Not when the server says the object is encrypted with SSE-KMS (or DSSE-KMS) or a
        customer's key, nor in an S3 Express directory bucket: those ETags are no md5,
        though they look like one. One boto3 HEAD (obstore's does not show encryption).
        """
        if self.bucket.endswith(EXPRESS_SUFFIX):
            return False
        try:
            answer = self.client().head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self.translate(exc, key) from exc
        return not opaque_encryption(answer)

    def learn_opaque_etags(self) -> None:
        """The server has shown that its ETags are no md5s: say so once, and remember."""
        if not self.opaque_etags:
            self.opaque_etags = True
            how = (
                "trusting the server's own checks"
                if self.trust_server_checks
                else ("reading each upload back")
            )
            # Not a warning: nothing is wrong, and every process would say it again.
            logger.info(
                "bucket %s gives ETags that are no md5s (SSE-KMS, SSE-C or the like): "
                "uploads are verified by %s",
                self.bucket,
                how,
            )

    def sse_arguments(self) -> dict[str, str]:
        """boto3 arguments that ask for the configured server-side encryption."""
        args: dict[str, str] = {}
        if self.sse is not None:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id is not None:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def translate(self, exc: BaseException, key: str, *, writing: bool = False) -> RepoError:
        """One clear error per failure; never a raw obstore/botocore exception."""
        return translate(
            exc,
            key,
            bucket=self.bucket,
            endpoint_url=self.endpoint_url,
            timeout=self.timeout,
            writing=writing,
        )

    def _make_obstore(self) -> Any:
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            kwargs["endpoint"] = self.endpoint_url
            kwargs["virtual_hosted_style_request"] = False
        if self.sse is not None:
            kwargs["server_side_encryption"] = self.sse
        if self.sse_kms_key_id is not None:
            kwargs["sse_kms_key_id"] = self.sse_kms_key_id
        client_options: Any = {
            "connect_timeout": timedelta(seconds=min(10, self.timeout)),
            # object_store's default 30 s cap on a whole request would cut off any
            # download slower than 30 s; a stall is caught by the read timeout instead.
            "timeout": timedelta(hours=24),
            "read_timeout": timedelta(seconds=self.timeout),
            "pool_max_idle_per_host": "64",
        }
        if self.endpoint_url and self.endpoint_url.startswith("http://"):
            client_options["allow_http"] = True
        # Up to 5 retries, each wait drawn between 100 ms and twice the last one (capped
        # at 5 s), for at most 3 timeouts' worth of time since the first attempt.
        retry: Any = {
            "max_retries": 5,
            "retry_timeout": timedelta(seconds=3 * self.timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
                "base": 2,
            },
        }
        if self._access_key and self._secret_key:
            kwargs["access_key_id"] = self._access_key
            kwargs["secret_access_key"] = self._secret_key
            return _ObStore(
                self.bucket, client_options=client_options, retry_config=retry, **kwargs
            )
        # No keys in the configuration: the standard AWS chain (env, profiles, instance role).
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider

        provider = Boto3CredentialProvider(boto3.Session())
        return _ObStore(
            self.bucket,
            client_options=client_options,
            retry_config=retry,
            credential_provider=provider,
            **kwargs,
        )

    def client(self) -> Any:
        """The boto3 client (made on first use), for what obstore cannot do."""
        with self._boto_lock:
            if self._boto is None:
                import boto3
                from botocore.config import Config as BotoConfig

                cfg = BotoConfig(
                    region_name=self.region,
                    retries={"mode": "standard", "max_attempts": 5},
                    max_pool_connections=self._boto_connections,
                    connect_timeout=min(10, self.timeout),
                    read_timeout=self.timeout,
                    # Every body boto3 sends carries a Content-MD5, which is signed and
                    # which the server checks: hashing the body again with SHA-256 for
                    # the signature (what botocore does over http) would add nothing.
                    s3={
                        "payload_signing_enabled": False,
                        **({"addressing_style": "path"} if self.endpoint_url else {}),
                    },
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                self._boto = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    config=cfg,
                )
            return self._boto

    def close(self) -> None:
        if self._boto is not None:
            self._boto.close()
            self._boto = None
