"""The only code that writes task records, and the task state machine.

Account queues (which tasks hold a slot or wait for one) live in `broker.queues`.

Layout in Redis (see `broker.keys`):
- a task is a hash `{v: revision, d: task JSON}`; every write is a compare-and-set on `v` (a Lua script
  on that one key), so concurrent writers (web, bridge, workers) never lose each other's changes;
- every successful write appends `{id, rev}` to the changes stream of the record's shard, in the
  same script as the compare-and-set (the stream shares the record's hash slot: `broker.keys`), so
  no crash, lost reply or failover keeps the write without its announcement or the other way round.
  The workers turn the announcements into hook deliveries, ledger rows and freed slots (at least
  once). A quiet write, one that only changes `properties` (Discord ids the workers bind as events
  arrive), is not announced: it frees no slot and wants no hook of its own (as the C# fork drops a
  notification whose status and progress did not move); receivers see it with the next notable
  revision;
- a write is idempotent, so the client resends it once when the connection fails after sending it
  (`broker.lua`): a revision holds one record, so finding the revision a write would create holding
  exactly the record it proposes means the write landed (with its announcement), and the
  compare-and-set answers success (the same answer as the first time), not a conflict, and
  announces nothing more. Two writers proposing the very same record at the very same revision
  both succeed, which is true: the record is what each of them wrote. An announcement read twice
  anyway (a consumer killed before its ack) is harmless, as a consumer reads the record it is told
  about and every effect of a change (slot release, hook schedule, ledger upsert, live set) is
  idempotent (see `workers.changes`);

State machine: NOT_START -> SUBMITTED -> IN_PROGRESS -> SUCCESS | FAILURE | CANCEL, MODAL -> NOT_START;
progress never goes back; a terminal state is final.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from broker import keys
from broker.batching import PipelineBatcher, Unbatched
from broker.clock import Clock, now_ms
from broker.lua import Script
from broker.metrics import Metrics
from broker.models import Task, TaskStatus, decode_task, encode_task
from broker.transitions import announce

__all__ = [
    "ALLOWED",
    "InvalidTransition",
    "TaskStore",
    "Update",
    "failing",
    "next_revision",
]

S = TaskStatus

#: legal moves; staying in the same status (to add progress or properties) is always legal unless terminal
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.NOT_START: frozenset({S.SUBMITTED, S.MODAL, S.FAILURE, S.CANCEL}),
    S.MODAL: frozenset({S.NOT_START, S.FAILURE, S.CANCEL}),
    S.SUBMITTED: frozenset({S.IN_PROGRESS, S.SUCCESS, S.FAILURE, S.CANCEL}),
    S.IN_PROGRESS: frozenset({S.SUCCESS, S.FAILURE, S.CANCEL}),
    S.SUCCESS: frozenset(),
    S.FAILURE: frozenset(),
    S.CANCEL: frozenset(),
}

#: length cap of each shard's changes stream (approximate: trimmed by whole nodes)
_CHANGES_MAXLEN = 200_000 // keys.SHARDS


class InvalidTransition(Exception):
    """A write tried an illegal status move (e.g. out of a terminal state)."""

    def __init__(self, task_id: str, old: TaskStatus, new: TaskStatus) -> None:
        super().__init__(f"task {task_id}: {old} -> {new} is not allowed")
        self.task_id = task_id
        self.old = old
        self.new = new


class Update(msgspec.Struct, frozen=True):
    """What a write did: the task as stored afterwards, and whether it changed."""

    task: Task | None
    changed: bool


# KEYS[1] task hash, KEYS[2] its shard's changes stream; ARGV: expected revision, new revision, json,
# ttl ms, task id, announce (1 or 0: a quiet write), stream length cap. Returns 1 when the record is
# now the one proposed at the new revision, 0 when another write got there first. A write that
# lands is announced in the same script. A resend of a write that landed (its reply was lost) finds
# its own revision holding exactly its record: 1 again, and no second announcement.
_CAS = Script("""
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '-1') ~= ARGV[1] then
  if cur == ARGV[2] and redis.call('HGET', KEYS[1], 'd') == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[5], 'rev', ARGV[2])
end
return 1
""")


def next_revision(previous: int, now_ms: int) -> int:
    """The revision of the write after `previous`: higher than it, and at least the writer's clock.

    Revisions are the hooks' versions (receivers drop a body whose version is not higher than the
    last), so they must stay strictly increasing even when Redis goes back in time: a host crash
    that loses the AOF's unsynced tail, a failover to a replica that had not received the last
    writes, a restore from a backup. A counter kept in Redis would then repeat numbers already
    sent, with other content. Taking the wall clock as a floor makes the epoch the time itself
    (a hybrid logical clock): every revision lost in a rollback was at most the clock at the
    crash (plus one per write in the same millisecond), and every revision written after the
    restart is at least the clock then, so none is ever repeated as long as the writers' clocks
    agree to within the time a restart takes (NTP keeps them within milliseconds; a restart takes
    seconds). Epoch milliseconds stay below 2**53, exact as JSON numbers in every language.
    """
    return max(previous + 1, now_ms)


def _proposal(current: Task, mutate: Callable[[Task], Task | None]) -> Task | None:
    """What `mutate` makes of `current` (progress never lower), or None when that changes nothing."""
    proposed = mutate(current)
    if proposed is None:
        return None
    if (
        proposed.status == current.status == TaskStatus.IN_PROGRESS
        and proposed.progress_percent < current.progress_percent
    ):
        proposed = msgspec.structs.replace(proposed, progress=current.progress)
    proposed = msgspec.structs.replace(proposed, revision=current.revision)
    return None if proposed == current else proposed


def is_quiet(old: Task, new: Task) -> bool:
    """Whether `new` differs from `old` only in `properties` (bookkeeping no client acts on)."""
    return msgspec.structs.replace(new, properties=old.properties, revision=old.revision) == old


def check_transition(old: Task, new: Task) -> None:
    """Raise `InvalidTransition` when `new` is not a legal successor of `old`."""
    if old.status == new.status:
        if old.status.is_terminal and _differs_beyond_seed(old, new):
            raise InvalidTransition(old.id, old.status, new.status)
        return
    if new.status not in ALLOWED[old.status]:
        raise InvalidTransition(old.id, old.status, new.status)


def _differs_beyond_seed(old: Task, new: Task) -> bool:
    # A finished task only ever learns its seed later (/image-seed) and the fate of its last hook
    # (properties.notifyHookError); everything else is frozen.
    props = msgspec.structs.replace(new.properties, notify_hook_error=old.properties.notify_hook_error)
    return msgspec.structs.replace(new, seed=old.seed, revision=old.revision, properties=props) != old


def failing(reason: str, *, now: int) -> Callable[[Task], Task | None]:
    """The edit that fails a task, for `TaskStore.update`: the one way a task fails, whoever fails it
    (the worker for the bot's error, the sweeper for a timeout, the bridge for a refused interaction
    or a disabled account). `failReason` set, `progress` cleared (as midjourney-proxy's `Task.fail`),
    `finishTime` now; a task that has ended already is left as it is."""

    def mutate(task: Task) -> Task | None:
        if task.status.is_terminal:
            return None
        return msgspec.structs.replace(
            task, status=TaskStatus.FAILURE, fail_reason=reason, progress="", finish_time=now
        )

    return mutate


class TaskStore:
    """Reads and writes task records, their Discord-id index and the blobs the bridge uploads.

    :param redis: the process's client (bytes responses).
    :param retention_seconds: how long a record lives after its last write.
    :param clock: returns epoch milliseconds; injectable for tests.
    :param batch: send the pipelines this store's callers queue in one loop iteration as one
        (`broker.batching`); False sends each alone, the yardstick of `bench/batching_bench.py`.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        retention_seconds: float,
        clock: Clock = now_ms,
        batch: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.retention_ms = int(retention_seconds * 1000)
        self.clock = clock
        # Concurrent reads and writes of this process share round trips (see broker.batching).
        self._batch: PipelineBatcher | Unbatched = (
            PipelineBatcher(redis, [_CAS]) if batch else Unbatched(redis, [_CAS])
        )

    # -- records -------------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task | None:
        raw = await self.get_raw(task_id)
        return decode_task(raw) if raw is not None else None

    async def get_raw(self, task_id: str) -> bytes | None:
        """The stored JSON, exactly what /fetch serves."""
        (raw,) = await self._batch.execute(lambda pipe: pipe.hget(keys.task_record(task_id), "d"))
        return raw  # type: ignore[no-any-return]

    async def get_many_raw(self, task_ids: Sequence[str], *, keep_missing: bool = False) -> list[Any]:
        """The stored JSON of each task, in order; unknown ids left out (or None with `keep_missing`)."""
        if not task_ids:
            return []

        def fill(pipe: Pipeline) -> None:
            for task_id in task_ids:
                pipe.hget(keys.task_record(task_id), "d")

        raws = await self._batch.execute(fill)
        return raws if keep_missing else [raw for raw in raws if raw is not None]

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        return [decode_task(raw) for raw in await self.get_many_raw(task_ids)]

    async def create(self, task: Task, *, durable: bool = False) -> Task:
        """Store a new task and announce it on the changes stream (see `next_revision`).

        :param durable: reply only once the write is durable (see `broker.redis_client`).
        """
        task = msgspec.structs.replace(task, revision=next_revision(0, self.clock()))
        ok = await self._write(task, expected="-1", durable=durable)
        if not ok:
            raise ValueError(f"task {task.id} already exists")
        announce(None, task, self.metrics)
        return task

    async def delete(self, task_id: str) -> None:
        await self.redis.delete(keys.task_record(task_id))

    async def update(
        self,
        task_id: str,
        mutate: Callable[[Task], Task | None],
        *,
        current: Task | None = None,
        index: Sequence[tuple[str, str]] = (),
        durable: bool = False,
    ) -> Update:
        """Apply `mutate` to the current record with compare-and-set, retrying on conflict.

        `mutate` returns the new task, or None to leave it as it is. It may be called more than once.
        Progress that would go back is kept at its old value. Raises `InvalidTransition`.

        :param current: a copy of the record the caller holds (read earlier, or its own last
            write), tried first to save a read. It may be stale: a write based on it only lands if
            the revision still matches, and "nothing to change" is only concluded on a fresh read.
        :param index: (kind, value) pairs to `index` for this task, written with the record (or
            alone when nothing changes).
        :param durable: return only once the write is durable (see `broker.redis_client`): for a
            write that something irrevocable follows (the bridge's claim before it sends).
        """
        pending = list(index)
        fresh = current is None
        try:
            while True:
                if current is None:
                    current, fresh = await self.get(task_id), True
                    if current is None:
                        return Update(None, False)
                proposed = _proposal(current, mutate)
                if proposed is None:
                    if fresh:
                        return Update(current, False)
                    current = None  # a newer record may still need the change
                    continue
                try:
                    check_transition(current, proposed)
                except InvalidTransition:
                    if fresh:
                        raise
                    current = None
                    continue
                revision = next_revision(current.revision, self.clock())
                proposed = msgspec.structs.replace(proposed, revision=revision)
                written = await self._write(
                    proposed,
                    expected=str(current.revision),
                    index=pending,
                    quiet=is_quiet(current, proposed),
                    durable=durable,
                )
                pending = []  # the pipeline wrote them, whether or not the CAS won
                if written:
                    announce(current, proposed, self.metrics)
                    return Update(proposed, True)
                current = None
        finally:
            if pending:
                await self.index_many(pending, task_id)

    async def transition(self, task_id: str, to: TaskStatus, **changes: Any) -> Update:
        """Move a task to `to`, setting the given Task fields (snake_case names).

        A move that is not allowed from the current status raises `InvalidTransition`.
        """

        def mutate(task: Task) -> Task:
            return msgspec.structs.replace(task, status=to, **changes)

        return await self.update(task_id, mutate)

    async def fail(self, task_id: str, reason: str, *, judged: Task | None = None) -> bool:
        """End a task as FAILURE with `reason` unless it has ended already; True when it moved.

        :param judged: the record the decision to fail was made on: the task is failed only while
            it is still that revision (a task sent or moved on since is left for a fresh look).
        """
        # Every unfinished status may move to FAILURE, so this never raises InvalidTransition.
        fail = failing(reason, now=self.clock())
        if judged is None:
            return (await self.update(task_id, fail)).changed

        def fail_unchanged(task: Task) -> Task | None:
            return fail(task) if task.revision == judged.revision else None

        return (await self.update(task_id, fail_unchanged, current=judged)).changed

    async def _write(
        self,
        task: Task,
        *,
        expected: str,
        index: Sequence[tuple[str, str]] = (),
        quiet: bool = False,
        durable: bool = False,
    ) -> bool:
        """Compare-and-set the record and announce it unless `quiet` (one script), with the `index`
        entries, in one round trip; False if the CAS lost.

        When the CAS loses, the `index` entries still go out: they belong to this task either way.
        """
        script_keys = [keys.task_record(task.id), keys.changes_stream(task.id)]
        args = [
            expected,
            task.revision,
            encode_task(task),
            self.retention_ms,
            task.id,
            0 if quiet else 1,
            _CHANGES_MAXLEN,
        ]

        def fill(pipe: Pipeline) -> None:
            _CAS.queue(pipe, script_keys, args)
            self._queue_index(pipe, index, task.id)

        # Idempotent, so resent when the connection fails (see the module): the CAS answers 1 again
        # without a second announcement, and the index entries are set again.
        replies = await self._batch.execute(fill, resend=True, durable=durable)
        return bool(replies[0])

    async def confirm_durable(self, task_id: str) -> None:
        """Return once every earlier write of the task's shard is durable, else raise `NotDurable`.

        For a write whose durable wait failed (`NotDurable`: it may or may not survive a failover):
        a later write to the same shard, confirmed durable, confirms it too, since the AOF and the
        replication stream are prefixes of the server's history. A write lost meanwhile (its
        primary failed over before a replica had it) is not in the record read after this.
        """
        probe = keys.durability_probe(task_id)
        await self._batch.execute(lambda pipe: pipe.set(probe, self.clock(), px=60_000), durable=True)

    # -- indexes from Discord ids to tasks (matching events) ------------------------------------

    async def index(self, kind: str, value: str, task_id: str) -> None:
        """Remember that Discord id `value` (nonce, message or interaction id, job hash) is `task_id`'s."""
        await self.index_many([(kind, value)], task_id)

    async def index_many(self, pairs: Sequence[tuple[str, str]], task_id: str) -> None:
        """`index` several (kind, value) pairs in one round trip."""
        if not pairs:
            return

        await self._batch.execute(lambda pipe: self._queue_index(pipe, pairs, task_id))

    def _queue_index(self, pipe: Pipeline, pairs: Sequence[tuple[str, str]], task_id: str) -> None:
        for kind, value in pairs:
            pipe.set(keys.lookup(kind, value), task_id, px=self.retention_ms)

    async def find(self, kind: str, value: str) -> str | None:
        found: bytes | None = await self.redis.get(keys.lookup(kind, value))
        return found.decode() if found is not None else None

    async def find_first(self, lookups: Sequence[tuple[str, str]]) -> tuple[str, Task] | None:
        """The first (kind, value) of `lookups` that indexes a stored task: (kind, task).

        All the index entries are read in one round trip, the task in another.
        """
        if not lookups:
            return None

        def fill(pipe: Pipeline) -> None:
            for kind, value in lookups:
                pipe.get(keys.lookup(kind, value))

        task_ids: list[bytes | None] = await self._batch.execute(fill)
        for (kind, _), task_id in zip(lookups, task_ids, strict=True):
            if task_id is not None:
                task = await self.get(task_id.decode())
                if task is not None:
                    return kind, task
        return None

    # -- blobs the bridge needs (images, masks) ------------------------------------------------

    async def put_blobs(self, task_id: str, blobs: dict[str, bytes]) -> None:
        if not blobs:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, data in blobs.items():
                pipe.set(keys.task_blob(task_id, name), data, px=self.retention_ms)
            await pipe.execute()

    async def get_blob(self, task_id: str, name: str) -> bytes | None:
        data: bytes | None = await self.redis.get(keys.task_blob(task_id, name))
        return data
