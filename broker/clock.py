"""The one wall clock of the product: epoch milliseconds.

Task times (`submitTime`, `startTime`, `finishTime`), slot and lease times, hook schedules and
account statuses are all epoch milliseconds, so they compare across processes and hosts. Classes
that read the time take a `clock: Clock` argument (default `now_ms`), so tests can inject one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "now_ms"]

#: returns epoch milliseconds
Clock = Callable[[], int]


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000
