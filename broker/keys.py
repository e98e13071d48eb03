"""Every Redis key and stream name, in one place.

Keys that one Lua script touches together carry the same hash tag (`{account}`, `{task}` or
`{hooks}`), so the same code runs on Redis Cluster and managed Valkey.
"""

from __future__ import annotations

__all__ = [
    "BRIDGES",
    "CHANGES_GROUP",
    "CHANGES_STREAM",
    "EVENTS_GROUP",
    "EVENTS_STREAM",
    "FINISHING_GROUP",
    "FINISHING_STREAM",
    "HOOKS_DUE",
    "HOOK_RECEIVERS_FAILING",
    "LIVE_TASKS",
    "METRICS",
    "STORED_IMAGES",
    "SWEEP_TICK",
    "UNMATCHED_EVENTS",
    "WORKERS",
    "account_day_count",
    "account_facts",
    "account_lease",
    "account_ready",
    "account_reconnect",
    "account_running",
    "account_seq",
    "account_status",
    "account_waiting",
    "admission_receipt",
    "bridge_rpc",
    "bridge_rpc_reply",
    "hook_receiver",
    "hook_state",
    "lookup",
    "task_blob",
    "task_record",
    "translation",
]

PREFIX = "mjb"

#: raw gateway dispatches from the bridge to the workers (a stream with one consumer group)
EVENTS_STREAM = f"{PREFIX}:events"
EVENTS_GROUP = "workers"

#: `{id, rev}` of every notable task write (see `broker.store`), read by the workers' consumer group
CHANGES_STREAM = f"{PREFIX}:changes"
CHANGES_GROUP = "workers-changes"

#: sorted set of non-terminal task ids, scored by the epoch ms they were first seen (the sweeper's)
LIVE_TASKS = f"{PREFIX}:tasks:live"

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
    """Hash {v: revision, d: task JSON}: the live record of one task."""
    return f"{PREFIX}:task:{{{task_id}}}"


def task_blob(task_id: str, name: str) -> str:
    """Bytes the bridge needs to run the task (uploaded images, a vary-region mask)."""
    return f"{PREFIX}:task:{{{task_id}}}:blob:{name}"


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


#: stream of task ids whose result is in but which a worker must finish before SUCCESS (`workers.finishing`)
FINISHING_STREAM = f"{PREFIX}:finishing"
FINISHING_GROUP = "workers-finishing"

#: sorted set of hook deliveries to make: task id scored by the epoch ms it is due (`workers.outbox`)
HOOKS_DUE = f"{PREFIX}:{{hooks}}:due"


def hook_state(task_id: str) -> str:
    """Hash with one task's hook delivery state (`workers.outbox`); it shares the due set's tag,
    since every outbox script touches both."""
    return f"{PREFIX}:{{hooks}}:task:{task_id}"


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


#: sorted set of task ids with a copy in the image store, scored by the epoch ms their record
#: expires at the earliest (`workers.image_retention` deletes the copy once the record is gone)
STORED_IMAGES = f"{PREFIX}:images:stored"

#: held for a little less than one `tasks.sweep_seconds` by the worker that sweeps this tick
SWEEP_TICK = f"{PREFIX}:sweep:tick"
