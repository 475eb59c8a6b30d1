"""Seals: keyed MACs on what the repository writes to the bucket about itself.

Backup manifests and journal entries decide what a restore brings back and what
retention deletes, and anyone who may write the backup prefix can write objects there.
With ``backup_key`` configured, each such document carries ``mac``: an HMAC-SHA256,
under that key, of its purpose and its canonical JSON (sorted keys, no spaces, ASCII)
without the ``mac`` field. The key lives with the configuration, never in the bucket, so
a document that verifies was written by a holder of the configuration. The table files
of a backup need no seal of their own: the sealed manifest holds their SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

__all__ = ["MAC_FIELD", "Seal", "check_seal", "seal"]

MAC_FIELD = "mac"
#: A document's seal, as checked: valid, absent, or present and wrong.
Seal = Literal["ok", "missing", "bad"]


def _mac(doc: dict[str, Any], key: str, purpose: str) -> str:
    body = {k: v for k, v in doc.items() if k != MAC_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    message = purpose.encode() + b"\0" + canonical.encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def seal(doc: dict[str, Any], key: str | None, purpose: str) -> dict[str, Any]:
    """`doc` with its ``mac`` for `purpose` ("manifest", "journal"); as is without a key."""
    if key is None:
        return doc
    return {**doc, MAC_FIELD: _mac(doc, key, purpose)}


def check_seal(doc: dict[str, Any], key: str, purpose: str) -> Seal:
    """Whether `doc` carries a valid seal for `purpose` under `key`."""
    mac = doc.get(MAC_FIELD)
    if mac is None:
        return "missing"
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(doc, key, purpose)):
        return "bad"
    return "ok"
