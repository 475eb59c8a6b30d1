"""Trial counts for the attack tests: small in the normal suite, large with REPO_SOAK=1.

``trials(normal, soak)`` is what a test loops over; every loop is bounded by it (and by a
deadline where a trial can hang), so no test runs on by itself.
"""

from __future__ import annotations

import os

SOAK = os.environ.get("REPO_SOAK", "") == "1"


def trials(normal: int, soak: int) -> int:
    """``normal`` in the normal suite, ``soak`` when REPO_SOAK=1."""
    return soak if SOAK else normal
