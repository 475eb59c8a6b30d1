"""moto's state manager, holding S3 restores "in progress" for a test.

moto's S3 server keeps each object's restore in a small state machine (model
``s3::keyrestore``: none -> in progress -> restored) whose progression its
``/moto-api/state-manager`` endpoint sets for the whole server. The default, immediate,
finishes a restore at once; `restores_held` makes it manual for one block and sets it back.
"""

from __future__ import annotations

import json
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["restores_held"]


def _moto_api(server: Any, action: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - our own moto server on 127.0.0.1
        f"{server.endpoint_url}/moto-api/state-manager/{action}",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        assert answer.status == 201


@contextmanager
def restores_held(server: Any) -> Iterator[Any]:
    """moto's restores held "in progress" until the block calls `finish()`.

    With progression ``manual``, moto moves a restore one step (none -> in progress ->
    restored) when its status is read after `times` requests for the object. `begin()`
    (times 1) lets the next HEAD after the restore request move it to "in progress";
    `hold()` (a huge count) keeps it there; unsetting the transition finishes it.
    (Before the first step moto reports a restore as done, so `begin()` comes first.)
    """

    class Control:
        def begin(self) -> None:
            _moto_api(server, "set-transition", _manual(1))

        def hold(self) -> None:
            _moto_api(server, "set-transition", _manual(10**9))

        def finish(self) -> None:
            _moto_api(server, "unset-transition", {"model_name": "s3::keyrestore"})

    control = Control()
    try:
        yield control
    finally:
        control.finish()


def _manual(times: int) -> dict[str, Any]:
    return {
        "model_name": "s3::keyrestore",
        "transition": {"progression": "manual", "times": times},
    }
