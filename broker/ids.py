"""Task ids: 16 digits, epoch milliseconds and 3 random ones, as midjourney-proxy's clients expect."""

from __future__ import annotations

import random

from broker.clock import Clock, now_ms

__all__ = ["IdSource"]


class IdSource:
    """16-digit task ids: epoch ms + 3 random digits, never repeated within one process and ms.

    Other processes may still pick the same id; `TaskStore.create` refuses a clash and the caller
    draws again.
    """

    def __init__(self, clock: Clock = now_ms) -> None:
        self._clock = clock
        self._ms = 0
        self._used: set[int] = set()

    def __call__(self) -> str:
        now = self._clock()
        if now > self._ms:
            self._ms, self._used = now, set()
        if len(self._used) >= 1000:
            # a thousand ids in one millisecond: borrow the next one
            self._ms, self._used = self._ms + 1, set()
        while True:
            suffix = random.randrange(1000)
            if suffix not in self._used:
                self._used.add(suffix)
                return f"{self._ms}{suffix:03d}"
