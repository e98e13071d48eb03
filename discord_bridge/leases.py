"""Account leases: each account is held by exactly one bridge process at a time.

- acquire: `SET keys.account_lease(id) <bridge id> NX PX <lease ms>`;
- renew: every lease/3, a Lua compare-and-pexpire; a lease that is not ours any more, or that we
  could not renew before it would have expired, is lost and its session must stop at once;
- release: Lua compare-and-delete (graceful shutdown, balancing, an account removed from config).

Bridges announce themselves in a sorted set (score = expiry ms) so each can compute its fair share,
ceil(accounts / live bridges), and a bridge holding more than that gives the extra accounts back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from broker import keys
from broker.clock import now_ms

__all__ = ["BRIDGES_KEY", "Leases", "fair_share"]

#: sorted set of live bridge ids, scored by when their announcement expires (epoch ms)
BRIDGES_KEY = keys.BRIDGES

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def fair_share(accounts: int, bridges: int) -> int:
    """How many accounts one of `bridges` live bridges should hold."""
    return math.ceil(accounts / max(1, bridges))


class Leases:
    """The leases of one bridge process.

    :param redis: Redis client.
    :param bridge_id: this process's id (stored as the lease value).
    :param lease_ms: lease time-to-live; renewed every third of it.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        bridge_id: str,
        lease_ms: int = 15_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.bridge_id = bridge_id
        self.lease_ms = lease_ms
        self.clock = clock
        #: account id -> monotonic time until which our lease is certainly valid
        self.held: dict[str, float] = {}
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def renew_interval(self) -> float:
        return self.lease_ms / 3000

    async def acquire(self, account_id: str) -> bool:
        started = self.clock()
        ok = await self.redis.set(keys.account_lease(account_id), self.bridge_id, nx=True, px=self.lease_ms)
        if not ok:
            # A restart of this same process id (unlikely) or our own earlier lease: treat as held.
            current = await self.redis.get(keys.account_lease(account_id))
            if current is None or current.decode() != self.bridge_id:
                return False
        self.held[account_id] = started + self.lease_ms / 1000
        return True

    async def renew(self) -> list[str]:
        """Renew every held lease; returns the accounts whose lease is lost (dropped from `held`)."""
        lost: list[str] = []
        for account_id in list(self.held):
            started = self.clock()
            try:
                ok = await self._renew(
                    keys=[keys.account_lease(account_id)], args=[self.bridge_id, self.lease_ms]
                )
            except Exception:
                # Redis unreachable: the lease stands until its last known expiry, not beyond.
                if self.clock() >= self.held[account_id]:
                    lost.append(account_id)
                continue
            if ok:
                self.held[account_id] = started + self.lease_ms / 1000
            else:
                lost.append(account_id)
        for account_id in lost:
            self.held.pop(account_id, None)
        return lost

    async def release(self, account_id: str) -> None:
        self.held.pop(account_id, None)
        await self._release(keys=[keys.account_lease(account_id)], args=[self.bridge_id])

    async def release_all(self) -> None:
        for account_id in list(self.held):
            try:
                await self.release(account_id)
            except Exception:
                self.held.pop(account_id, None)

    async def announce(self) -> int:
        """Say this bridge is alive; returns how many bridges are alive (including this one)."""
        now = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(BRIDGES_KEY, {self.bridge_id: now + self.lease_ms})
            pipe.zremrangebyscore(BRIDGES_KEY, "-inf", now)
            pipe.zcard(BRIDGES_KEY)
            results = await pipe.execute()
        return max(1, int(results[-1]))

    async def withdraw(self) -> None:
        await self.redis.zrem(BRIDGES_KEY, self.bridge_id)

    async def holders(self, account_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(account_ids)
        if not ids:
            return {}
        values = await self.redis.mget([keys.account_lease(a) for a in ids])
        return {a: (v.decode() if v is not None else None) for a, v in zip(ids, values, strict=True)}
