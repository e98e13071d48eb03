"""Every Redis key and stream name, in one place.

Keys that one Lua script or MULTI touches together carry the same hash tag, so the same code runs
on Redis Cluster (where such a call must stay in one hash slot) and on one server:

- ``{<account id>}``: an account's queues, lease, status and bridge calls (admission is one script);
- ``{<shard tag>}``: one of `SHARDS` shards of the task data. A task lives in the shard of its id
  (`task_shard`): its record, blobs and hook delivery state, beside that shard's changes stream,
  finishing stream, live set, hook due set and stored-images set, so that the record's
  compare-and-set and its change announcement are one script on one slot (`broker.store`), and
  every hook outbox script touches one task's state and its shard's due set (`workers.outbox`).
  Gateway events go to the events stream of their account's shard (`account_shard`), so one
  account's events stay in order in one stream.

The shard tags are chosen so that shard k hashes into slots [k * 1024, (k + 1) * 1024), near the
middle: a cluster whose masters split the 16384 slots evenly (as ``valkey-cli --cluster create``
does) holds ``SHARDS / masters`` shards on each, give or take one. Readers of a sharded stream or
set read every shard (`read_groups` says how many reads that takes). Changing `SHARDS` or the tags
moves every task key: `broker.migrate` is the tool for such a move.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = [
    "BRIDGES",
    "CHANGES_GROUP",
    "CHANGES_STREAMS",
    "EVENTS_GROUP",
    "EVENTS_STREAMS",
    "FINISHING_GROUP",
    "FINISHING_STREAMS",
    "HOOKS_DUE",
    "HOOK_RECEIVERS_FAILING",
    "LIVE_TASKS",
    "METRICS",
    "SHARDS",
    "SHARD_TAGS",
    "STORED_IMAGES",
    "SWEEP_TICK",
    "TASK_RECORDS_MATCH",
    "UNMATCHED_EVENTS",
    "V1",
    "WORKERS",
    "account_day_count",
    "account_facts",
    "account_lease",
    "account_ready",
    "account_reconnect",
    "account_running",
    "account_seq",
    "account_shard",
    "account_status",
    "account_waiting",
    "admission_receipt",
    "bridge_rpc",
    "bridge_rpc_reply",
    "changes_stream",
    "durability_probe",
    "events_stream",
    "finishing_stream",
    "hook_receiver",
    "hook_state",
    "hooks_due",
    "image_token",
    "live_tasks",
    "lookup",
    "read_groups",
    "shard_of_key",
    "stored_images",
    "task_blob",
    "task_record",
    "task_shard",
    "translation",
]

PREFIX = "mjb"

#: how many shards the task data and the streams are split into
SHARDS = 16
#: the hash tag of each shard (without braces). Shard k's tag is the first ``s<k>.<n>`` whose slot
#: (CRC16, `redis.crc.key_slot`) lies within 16 slots of the middle of [k * 1024, (k + 1) * 1024):
#: the middle, so that an even split over any number of masters up to 16 (whose boundaries are
#: within a slot of ``i * 16384 / masters``, never nearer than 34 slots to a middle) puts each shard
#: on the master that holds most of its range, and the counts per master differ by at most one.
#: Written out rather than searched at every start: every stored task key depends on them
#: (`tests/unit/test_keys.py` checks the rule and the spread).
SHARD_TAGS: tuple[str, ...] = (
    "s0.14",
    "s1.694",
    "s2.310",
    "s3.1225",
    "s4.91",
    "s5.247",
    "s6.395",
    "s7.173",
    "s8.260",
    "s9.1346",
    "s10.373",
    "s11.195",
    "s12.14",
    "s13.941",
    "s14.800",
    "s15.110",
)


def task_shard(task_id: str) -> int:
    """The shard of a task's keys: a stable hash of its id (the same in every process and release)."""
    return zlib.crc32(task_id.encode()) % SHARDS


def account_shard(account_id: str) -> int:
    """The shard whose events stream carries the account's gateway events."""
    return zlib.crc32(account_id.encode()) % SHARDS


def _sharded(shard: int, name: str) -> str:
    return f"{PREFIX}:{{{SHARD_TAGS[shard]}}}:{name}"


def _per_shard(name: str) -> tuple[str, ...]:
    return tuple(_sharded(shard, name) for shard in range(SHARDS))


def shard_of_key(key: str) -> int | None:
    """The shard a sharded key belongs to, or None for a key outside the shards."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end < 0:
        return None
    try:
        return SHARD_TAGS.index(key[start + 1 : end])
    except ValueError:
        return None


def read_groups(streams: Sequence[str], *, mode: str) -> list[list[str]]:
    """How a consumer reads `streams`: one XREADGROUP per group.

    A single server or a Sentinel-watched primary takes one XREADGROUP naming every stream (one
    round trip for all the shards); a cluster refuses a command whose keys are in several slots
    (CROSSSLOT), so there each stream is read on its own.
    """
    if mode == "cluster":
        return [[stream] for stream in streams]
    return [list(streams)]


#: raw gateway dispatches from the bridge to the workers, one stream per shard (by account), each
#: with one consumer group
EVENTS_STREAMS = _per_shard("events")
EVENTS_GROUP = "workers"


def events_stream(account_id: str) -> str:
    """The events stream of the account's shard: one account's events stay in order in it."""
    return EVENTS_STREAMS[account_shard(account_id)]


#: `{id, rev}` of every notable task write (see `broker.store`), one stream per shard, read by the
#: workers' consumer group
CHANGES_STREAMS = _per_shard("changes")
CHANGES_GROUP = "workers-changes"


def changes_stream(task_id: str) -> str:
    """The changes stream a write of the task is announced on (its record's shard)."""
    return CHANGES_STREAMS[task_shard(task_id)]


#: sorted sets of non-terminal task ids, scored by the epoch ms they were first seen (the
#: sweeper's), one per shard
LIVE_TASKS = _per_shard("tasks:live")


def live_tasks(task_id: str) -> str:
    """The live set the task belongs in."""
    return LIVE_TASKS[task_shard(task_id)]


#: counter of events that were about a job but matched no task
UNMATCHED_EVENTS = f"{PREFIX}:stats:unmatched"

#: hash: process name -> its latest metrics snapshot (`broker.metrics`); the web's /metrics reads it
#: whole and deletes the fields whose snapshot expired
METRICS = f"{PREFIX}:metrics"

#: sorted set of live bridge processes, scored by when their announcement expires (epoch ms)
BRIDGES = f"{PREFIX}:bridges"

#: sorted set of live worker processes, scored by when their heartbeat expires (epoch ms); the
#: web answers submits with code 9 while none is alive (see `broker.heartbeat`)
WORKERS = f"{PREFIX}:workers"


def task_record(task_id: str) -> str:
    """Hash {v: revision, d: task JSON}: the live record of one task (in its shard)."""
    return _sharded(task_shard(task_id), f"task:{task_id}")


def task_blob(task_id: str, name: str) -> str:
    """Bytes the bridge needs to run the task (uploaded images, a vary-region mask)."""
    return _sharded(task_shard(task_id), f"blob:{task_id}:{name}")


#: SCAN/KEYS pattern matching every task record (of every shard) and nothing else
TASK_RECORDS_MATCH = f"{PREFIX}:{{*}}:task:*"


def account_waiting(account_id: str) -> str:
    """Sorted set of queued task ids, scored by admission order."""
    return f"{PREFIX}:acct:{{{account_id}}}:waiting"


def account_running(account_id: str) -> str:
    """Sorted set of task ids holding a slot, scored by the time they got it (ms)."""
    return f"{PREFIX}:acct:{{{account_id}}}:running"


def account_ready(account_id: str) -> str:
    """List of task ids that just got a slot: the bridge's wake-up call (running is the truth)."""
    return f"{PREFIX}:acct:{{{account_id}}}:ready"


def account_seq(account_id: str) -> str:
    return f"{PREFIX}:acct:{{{account_id}}}:seq"


def admission_receipt(account_id: str, task_id: str) -> str:
    """String `"<call id> <code> <position> <load>"`: one admission's outcome, kept a minute for a
    resend of it (`broker.queues`)."""
    return f"{PREFIX}:acct:{{{account_id}}}:admitted:{task_id}"


def account_day_count(account_id: str, day: str) -> str:
    """Counter of the tasks admitted on the account on `day` (`YYYY-MM-DD` in the operator's
    timezone), kept a bit more than a day: only accounts with a `daily_limit` have one."""
    return f"{PREFIX}:acct:{{{account_id}}}:day:{day}"


def account_status(account_id: str) -> str:
    """Hash {state, reason, bridge, updated_ms}: an account's live health, written only by the
    health module of the bridge that holds it (see `broker.account_status`)."""
    return f"{PREFIX}:acct:{{{account_id}}}:status"


def account_facts(account_id: str) -> str:
    """List of `AccountFact`s the workers report for the account's health module (oldest first)."""
    return f"{PREFIX}:acct:{{{account_id}}}:facts"


def account_lease(account_id: str) -> str:
    """Which bridge process holds the account's gateway session (value = bridge id, with a TTL)."""
    return f"{PREFIX}:acct:{{{account_id}}}:lease"


def lookup(kind: str, value: str) -> str:
    """Index from a Discord id (`nonce`, `message`, `interaction`, `hash`) to the task it belongs to."""
    return f"{PREFIX}:idx:{kind}:{value}"


def bridge_rpc(account_id: str) -> str:
    """List of requests from web to the bridge holding the account (uploads, image seed)."""
    return f"{PREFIX}:acct:{{{account_id}}}:rpc"


def bridge_rpc_reply(request_id: str) -> str:
    return f"{PREFIX}:rpc:{{{request_id}}}:reply"


#: streams of task ids whose result is in but which a worker must finish before SUCCESS
#: (`workers.finishing`), one per shard
FINISHING_STREAMS = _per_shard("finishing")
FINISHING_GROUP = "workers-finishing"


def finishing_stream(task_id: str) -> str:
    return FINISHING_STREAMS[task_shard(task_id)]


#: sorted sets of hook deliveries to make: task id scored by the epoch ms it is due
#: (`workers.outbox`), one per shard
HOOKS_DUE = _per_shard("hooks:due")


def hooks_due(task_id: str) -> str:
    """The due set of the task's shard."""
    return HOOKS_DUE[task_shard(task_id)]


def hook_state(task_id: str) -> str:
    """Hash with one task's hook delivery state (`workers.outbox`); it shares the due set's shard,
    since every outbox script touches both."""
    return _sharded(task_shard(task_id), f"hook:{task_id}")


def translation(digest: str) -> str:
    """A cached translation (`broker.translation`); `digest` hashes the model, direction and text."""
    return f"{PREFIX}:tr:{digest}"


def account_reconnect(account_id: str) -> str:
    """A reconnect asked by an admin (value = when, epoch ms; short expiry): the bridge holding the
    account drops its gateway session and opens a new one (`discord_bridge.main`)."""
    return f"{PREFIX}:acct:{{{account_id}}}:reconnect"


#: sorted set of hook receivers (``host:port``) whose last delivery failed, scored by when (epoch
#: ms); a success there removes it (`broker.hook_receivers`)
HOOK_RECEIVERS_FAILING = f"{PREFIX}:hooks:receivers:failing"


def hook_receiver(receiver: str) -> str:
    """Hash {failures, first_failure_ms, last_failure_ms, last_error} of a failing hook receiver."""
    return f"{PREFIX}:hooks:receiver:{receiver}"


#: sorted sets of task ids with a copy in the image store, scored by the epoch ms their record
#: expires at the earliest (`workers.image_retention` deletes the copy once the record is gone),
#: one per shard
STORED_IMAGES = _per_shard("images:stored")


def stored_images(task_id: str) -> str:
    return STORED_IMAGES[task_shard(task_id)]


class V1:
    """The layout before the shards, read only by `broker.migrate` (which moves it into this one).

    One task's record and blobs were tagged by its id, its hook state beside a single due set in one
    ``{hooks}`` slot; the streams and sets below were one key each.
    """

    #: task records ``mjb:task:{<id>}`` (the id is between the braces)
    TASK_RECORDS_MATCH = f"{PREFIX}:task:{{*}}"
    #: task blobs ``mjb:task:{<id>}:blob:<name>``
    TASK_BLOBS_MATCH = f"{PREFIX}:task:{{*}}:blob:*"
    #: hook delivery states ``mjb:{hooks}:task:<id>``
    HOOK_STATES_MATCH = f"{PREFIX}:{{hooks}}:task:*"
    HOOKS_DUE = f"{PREFIX}:{{hooks}}:due"
    EVENTS_STREAM = f"{PREFIX}:events"
    CHANGES_STREAM = f"{PREFIX}:changes"
    FINISHING_STREAM = f"{PREFIX}:finishing"
    LIVE_TASKS = f"{PREFIX}:tasks:live"
    STORED_IMAGES = f"{PREFIX}:images:stored"


#: held for a little less than one `tasks.sweep_seconds` by the worker that sweeps this tick
SWEEP_TICK = f"{PREFIX}:sweep:tick"


def image_token(task_id: str) -> str:
    """The URL token of a task's copy in the image store (`workers.image_copy`): the first copy sets
    it, a copy of the same task made meanwhile (a finishing entry added twice) takes it."""
    return _sharded(task_shard(task_id), f"images:token:{task_id}")


def durability_probe(task_id: str) -> str:
    """A key in the task's shard written only to learn that the shard's earlier writes are durable
    (`TaskStore.confirm_durable`)."""
    return _sharded(task_shard(task_id), "durability-probe")
