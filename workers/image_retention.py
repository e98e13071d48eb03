"""Stored images leave with their task: a copy is deleted once its task's record has expired.

A task record lives `tasks.retention_days` after its last write (`broker.store`); Redis says
nothing when a key expires, so every copy is noted in its shard's `keys.stored_images` set, scored
by the earliest time its record can be gone. The sweep (the worker's cron) looks at the copies that
are due: one whose record still lives (a later write, such as the image seed, extended it) is
scored again by the record's remaining life; the others are deleted, manifest first.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from broker import keys
from broker.clock import Clock
from broker.image_store import ImageStore

__all__ = ["ImageRetention"]

log = logging.getLogger(__name__)


class ImageRetention:
    """Deletes the copies of tasks whose records are gone.

    :param batch: copies looked at per sweep at most (the rest wait for the next).
    """

    def __init__(self, store: ImageStore, redis: aioredis.Redis, *, clock: Clock, batch: int = 200) -> None:
        self.store = store
        self.redis = redis
        self.clock = clock
        self.batch = batch

    async def sweep(self) -> int:
        """Delete the due copies of expired tasks; returns how many were deleted."""
        now = self.clock()
        async with self.redis.pipeline(transaction=False) as pipe:
            for stored in keys.STORED_IMAGES:
                pipe.zrangebyscore(stored, "-inf", now, start=0, num=self.batch)
            shards = await pipe.execute()
        ids = [raw.decode() for due in shards for raw in due][: self.batch]
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.pttl(keys.task_record(task_id))
            lives = await pipe.execute()
        deleted = 0
        for task_id, ttl in zip(ids, lives, strict=True):
            if ttl is not None and (ttl > 0 or ttl == -1):
                # still there: due again when it can have expired (-1: no expiry, look again in a day)
                again = now + (ttl if ttl > 0 else 86_400_000)
                await self.redis.zadd(keys.stored_images(task_id), {task_id: again}, xx=True)
                continue
            await self.store.delete(task_id)
            await self.redis.zrem(keys.stored_images(task_id), task_id)
            deleted += 1
        if deleted:
            log.info("deleted the stored images of %d expired tasks", deleted)
        return deleted
