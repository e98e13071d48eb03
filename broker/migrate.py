"""``python -m broker.migrate``: move Redis data from the layout before the shards into today's.

Stop every web, worker and bridge process first (leave Redis running): a process of either release
running meanwhile writes keys this tool has moved already, or reads keys it has not moved yet. Then
run it once, and start the new release. It reads the old keys (`broker.keys.V1`) from ``--from``
(default: the configured Redis itself) and writes today's (`broker.keys`) through the configured
client, with commands on one key each (a Redis Cluster takes them as well as one server):

- task records and blobs, and each task's hook delivery state: copied with their expiry, unless
  the new key exists already (then kept as it is);
- the live set, the hook due set and the stored-images set: each member into its shard's set
  (ZADD NX: a member there already keeps its score);
- the events, changes and finishing streams are *drained*: the entries their consumer group still
  needs (read by no worker yet, or read but not acknowledged) are added to the stream of their
  shard under their own ids, in order; the workers' groups start from the beginning of the new
  streams, so they get each once more (every handler is idempotent). Entries already handled are
  dropped, and with them the group: `/mj/task/list` shows the tasks written since, besides the
  queued and running ones. An entry whose id the new stream has passed (a process of the new
  release ran first) is added under a new id rather than lost.

Each old key is deleted once its contents are written (``--keep-old`` keeps them, e.g. to rehearse
on a copy), so a second run, or a run after one that was interrupted, moves only what is left: the
tool is idempotent. It prints what it moved.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from broker import keys
from broker.config import config_path, load_settings
from broker.redis_client import connect, open_redis

__all__ = ["Moved", "main", "migrate"]

log = logging.getLogger(__name__)

V1 = keys.V1
_BATCH = 500
#: the group whose position says which entries of each old stream are still needed
_STREAMS = (
    (V1.EVENTS_STREAM, keys.EVENTS_GROUP, lambda fields: keys.events_stream(_text(fields[b"account"]))),
    (V1.CHANGES_STREAM, keys.CHANGES_GROUP, lambda fields: keys.changes_stream(_text(fields[b"id"]))),
    (V1.FINISHING_STREAM, keys.FINISHING_GROUP, lambda fields: keys.finishing_stream(_text(fields[b"id"]))),
)
#: old sorted set -> the new set of a member (a task id)
_SETS = (
    (V1.LIVE_TASKS, keys.live_tasks),
    (V1.HOOKS_DUE, keys.hooks_due),
    (V1.STORED_IMAGES, keys.stored_images),
)


class Moved(msgspec.Struct, kw_only=True):
    """What one kind of data came to: written anew, found there already, left out."""

    moved: int = 0
    present: int = 0
    #: stream entries whose id the new stream had passed, added under a new id
    renumbered: int = 0
    #: stream entries no worker needs any more (acknowledged), and malformed ones
    dropped: int = 0


async def migrate(
    source: aioredis.Redis, target: aioredis.Redis, *, keep_old: bool = False
) -> dict[str, Moved]:
    """Move every old key of `source` into today's layout on `target` (see the module)."""
    report: dict[str, Moved] = {}
    report["task records"] = await _move_hashes(
        source, target, V1.TASK_RECORDS_MATCH, _record_key, keep_old=keep_old
    )
    report["task blobs"] = await _move_blobs(source, target, keep_old=keep_old)
    report["hook states"] = await _move_hashes(
        source, target, V1.HOOK_STATES_MATCH, _hook_state_key, keep_old=keep_old
    )
    for old, new_key in _SETS:
        report[old] = await _move_set(source, target, old, new_key, keep_old=keep_old)
    for old, group, stream_of in _STREAMS:
        report[old] = await _move_stream(source, target, old, group, stream_of, keep_old=keep_old)
    return report


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _record_key(old: str) -> str | None:
    """``mjb:task:{<id>}`` -> the record's key today."""
    prefix = V1.TASK_RECORDS_MATCH.split("*")[0]
    if not old.startswith(prefix) or not old.endswith("}"):
        return None
    return keys.task_record(old[len(prefix) : -1])


def _hook_state_key(old: str) -> str | None:
    """``mjb:{hooks}:task:<id>`` -> the task's hook state key today."""
    prefix = V1.HOOK_STATES_MATCH.split("*")[0]
    return keys.hook_state(old[len(prefix) :]) if old.startswith(prefix) else None


def _blob_key(old: str) -> str | None:
    """``mjb:task:{<id>}:blob:<name>`` -> the blob's key today."""
    prefix = V1.TASK_BLOBS_MATCH.split("*")[0]
    task_id, sep, name = old[len(prefix) :].partition("}:blob:")
    return keys.task_blob(task_id, name) if old.startswith(prefix) and sep else None


async def _scan(redis: aioredis.Redis, match: str) -> AsyncIterator[list[str]]:
    """The keys matching `match`, in batches."""
    batch: list[str] = []
    async for key in redis.scan_iter(match=match, count=_BATCH):
        batch.append(_text(key))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _delete(source: aioredis.Redis, old_keys: Sequence[str]) -> None:
    async with source.pipeline(transaction=False) as pipe:
        for old in old_keys:
            pipe.delete(old)
        await pipe.execute()


async def _move_hashes(
    source: aioredis.Redis,
    target: aioredis.Redis,
    match: str,
    new_key_of: Callable[[str], str | None],
    *,
    keep_old: bool,
) -> Moved:
    """Copy each hash matching `match` with its expiry, where its new key is still free."""
    counts = Moved()
    async for batch in _scan(source, match):
        pairs = [(old, new) for old in batch if (new := new_key_of(old)) is not None]
        async with source.pipeline(transaction=False) as pipe:
            for old, _new in pairs:
                pipe.hgetall(old)
                pipe.pttl(old)
            read = await pipe.execute()
        async with target.pipeline(transaction=False) as pipe:
            for _old, new in pairs:
                pipe.exists(new)
            there = await pipe.execute()
        async with target.pipeline(transaction=False) as pipe:
            for i, ((_old, new), exists) in enumerate(zip(pairs, there, strict=True)):
                fields, ttl = read[2 * i], read[2 * i + 1]
                if exists or not fields:
                    counts.present += bool(exists)
                    continue
                pipe.hset(new, mapping=fields)
                if ttl > 0:
                    pipe.pexpire(new, ttl)
                counts.moved += 1
            await pipe.execute()
        if not keep_old:
            await _delete(source, [old for old, _new in pairs])
    return counts


async def _move_blobs(source: aioredis.Redis, target: aioredis.Redis, *, keep_old: bool) -> Moved:
    """Copy each task blob with its expiry, where its new key is still free."""
    counts = Moved()
    async for batch in _scan(source, V1.TASK_BLOBS_MATCH):
        pairs = [(old, new) for old in batch if (new := _blob_key(old)) is not None]
        async with source.pipeline(transaction=False) as pipe:
            for old, _new in pairs:
                pipe.get(old)
                pipe.pttl(old)
            read = await pipe.execute()
        async with target.pipeline(transaction=False) as pipe:
            for i, (_old, new) in enumerate(pairs):
                data, ttl = read[2 * i], read[2 * i + 1]
                pipe.set(new, data if data is not None else b"", nx=True, px=ttl if ttl > 0 else None)
            written = await pipe.execute()
        counts.moved += sum(1 for ok in written if ok)
        counts.present += sum(1 for ok in written if not ok)
        if not keep_old:
            await _delete(source, [old for old, _new in pairs])
    return counts


async def _move_set(
    source: aioredis.Redis,
    target: aioredis.Redis,
    old: str,
    new_key_of: Callable[[str], str],
    *,
    keep_old: bool,
) -> Moved:
    """Add each member of the sorted set `old` to its shard's set (ZADD NX), with its score."""
    counts = Moved()
    cursor = 0
    while True:
        cursor, rows = await source.zscan(old, cursor, count=_BATCH)
        async with target.pipeline(transaction=False) as pipe:
            for member, score in rows:
                pipe.zadd(new_key_of(_text(member)), {member: score}, nx=True)
            added = await pipe.execute()
        counts.moved += sum(added)
        counts.present += len(added) - sum(added)
        if cursor == 0:
            break
    if not keep_old:
        await source.delete(old)
    return counts


async def _move_stream(
    source: aioredis.Redis,
    target: aioredis.Redis,
    old: str,
    group: str,
    stream_of: Callable[[dict[bytes, bytes]], str],
    *,
    keep_old: bool,
) -> Moved:
    """Add the entries of `old` that `group` still needs to their shards' streams (see the module)."""
    counts = Moved()
    if not await source.exists(old):
        return counts
    needed = await _needed_entries(source, old, group)
    length = int(await source.xlen(old))
    counts.dropped = length - len(needed)
    for start in range(0, len(needed), _BATCH):
        chunk = needed[start : start + _BATCH]
        routed: list[tuple[bytes, dict[bytes, bytes], str]] = []
        for entry_id, fields in chunk:
            try:
                routed.append((entry_id, fields, stream_of(fields)))
            except (KeyError, UnicodeDecodeError):
                counts.dropped += 1  # malformed: no worker could have used it
        async with target.pipeline(transaction=False) as pipe:
            for entry_id, fields, stream in routed:
                pipe.xadd(stream, fields, id=entry_id)
            added = await pipe.execute(raise_on_error=False)
        passed = [
            entry for entry, reply in zip(routed, added, strict=True) if isinstance(reply, ResponseError)
        ]
        counts.moved += len(routed) - len(passed)
        await _renumber(target, passed, counts)
    if not keep_old:
        await source.delete(old)
    return counts


async def _needed_entries(
    source: aioredis.Redis, old: str, group: str
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of `old` that `group` has not handled: pending ones and those after its position
    (every entry when the group does not exist), in id order."""
    groups = {_text(g["name"]): g for g in await source.xinfo_groups(old)}
    if group not in groups:
        return [(entry_id, fields) for entry_id, fields in await source.xrange(old)]
    last = _text(groups[group]["last-delivered-id"])
    pending: list[bytes] = []
    start = "-"
    while True:
        rows = await source.xpending_range(old, group, min=start, max="+", count=_BATCH)
        pending.extend(row["message_id"] for row in rows)
        if len(rows) < _BATCH:
            break
        start = "(" + _text(rows[-1]["message_id"])
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    async with source.pipeline(transaction=False) as pipe:
        for entry_id in pending:
            pipe.xrange(old, min=entry_id, max=entry_id)
        for found in await pipe.execute():
            entries.extend(found)  # an entry trimmed since it was read is gone: nothing to move
    entries.extend(await source.xrange(old, min="(" + last, max="+"))
    return entries


async def _renumber(
    target: aioredis.Redis, passed: list[tuple[bytes, dict[bytes, bytes], str]], counts: Moved
) -> None:
    """Entries whose id their new stream has passed: there already (an earlier run) or added anew."""
    if not passed:
        return
    async with target.pipeline(transaction=False) as pipe:
        for entry_id, _fields, stream in passed:
            pipe.xrange(stream, min=entry_id, max=entry_id)
        found = await pipe.execute()
    async with target.pipeline(transaction=False) as pipe:
        for (_entry_id, fields, stream), there in zip(passed, found, strict=True):
            if there:
                counts.present += 1
            else:
                pipe.xadd(stream, fields)
                counts.renumbered += 1
        await pipe.execute()


def _describe(report: dict[str, Moved]) -> list[str]:
    lines = []
    for what, counts in report.items():
        parts = [f"{counts.moved} moved", f"{counts.present} there already"]
        if counts.renumbered:
            parts.append(f"{counts.renumbered} under a new id")
        if counts.dropped:
            parts.append(f"{counts.dropped} handled already, dropped")
        lines.append(f"{what}: {', '.join(parts)}")
    return lines


async def _run(args: argparse.Namespace) -> dict[str, Moved]:
    settings = load_settings(config_path(args.config))
    target = open_redis(settings)
    source: Any = connect(args.source, settings.redis) if args.source else target
    try:
        return await migrate(source, target, keep_old=args.keep_old)
    finally:
        if source is not target:
            await source.aclose()
        await target.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m broker.migrate``."""
    parser = argparse.ArgumentParser(
        prog="python -m broker.migrate",
        description=__doc__.splitlines()[0]
        + " Stop every web, worker and bridge process first (leave Redis running); start the new"
        " release after it. Safe to run again.",
    )
    parser.add_argument("--config", help="config file (default: $MJBROKER_CONFIG or ./config.yaml)")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the Redis holding the old layout (default: the configured one; redis://:password@host:port/0)",
    )
    parser.add_argument("--keep-old", action="store_true", help="leave the old keys where they are")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for line in _describe(asyncio.run(_run(args))):
        print(line)


if __name__ == "__main__":
    main()
