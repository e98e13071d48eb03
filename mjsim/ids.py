"""Snowflake, UUID and token generation (deterministic when seeded)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

__all__ = ["DISCORD_EPOCH_MS", "IdFactory"]

#: Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
DISCORD_EPOCH_MS = 1420070400000


class IdFactory:
    """Produces strictly increasing snowflakes, job UUIDs and account tokens.

    With ``seed`` set, UUIDs and tokens repeat across runs (snowflakes still carry the clock,
    as real ones do, but remain unique and increasing).
    """

    def __init__(self, *, seed: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self._rng = random.Random(seed)
        self._seeded = seed is not None
        self._clock = clock
        self._last_ms = 0
        self._inc = 0

    def snowflake(self) -> str:
        """Return the next snowflake as a decimal string (worker 1, process 0)."""
        now_ms = int(self._clock() * 1000) - DISCORD_EPOCH_MS
        if now_ms > self._last_ms:
            self._last_ms = now_ms
            self._inc = 0
        else:
            self._inc += 1
            if self._inc >= 4096:
                # Borrow the next millisecond rather than repeat an id.
                self._last_ms += 1
                self._inc = 0
        return str((self._last_ms << 22) | (1 << 17) | self._inc)

    def entity_id(self) -> str:
        """An id for a guild/channel/account: repeatable when seeded, else a fresh snowflake."""
        if not self._seeded:
            return self.snowflake()
        return str(self._rng.randrange(1 << 60, 1 << 61))

    def uuid4(self) -> str:
        """Return a random (seeded) version-4 UUID string: the Midjourney job hash."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def token(self) -> str:
        """Return a user-token-looking string (three dot-separated base64-ish parts)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        parts = (24, 6, 38)
        return ".".join("".join(self._rng.choice(alphabet) for _ in range(n)) for n in parts)

    def user_id(self) -> str:
        """Return a plausible 19-digit user id drawn from the seeded generator."""
        return str(self._rng.randrange(10**18, 2 * 10**18))

    def digits(self, n: int) -> str:
        """Return ``n`` random digits (job seeds)."""
        return str(self._rng.randrange(10 ** (n - 1), 10**n))

    def hex(self, n: int) -> str:
        """Return ``n`` random hex characters (session ids, iframe tokens)."""
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))
