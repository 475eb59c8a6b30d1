"""What crosses the wire to S3: user metadata encoding and error codes."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

__all__ = ["decode_meta", "encode_meta", "first_line", "s3_code"]

XML_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
META_SAFE = "/=:-_.~@+,;!*'()"


def s3_code(exc: BaseException) -> str | None:
    """The S3 error code: from botocore's parsed response, or the XML obstore quotes."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    found = XML_CODE.search(str(exc))
    return found.group(1) if found else None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:300]


def encode_meta(value: str) -> str:
    """HTTP headers carry ASCII only: percent-encode the rest (decoded by `head`)."""
    return quote(value, safe=META_SAFE)


def decode_meta(value: str) -> str:
    return unquote(value)
