"""Account choice and the atomic admit: 1 started, 22 queued, 23 queue full, 3 no usable account.

Which accounts may take a task is `broker.eligibility` (pure) and the choice rules
`broker.choice`; `Admitter` adds the Redis reads (live account status, loads) and
`create_and_admit`: the record written first, then the one atomic admission step of
`AccountQueues.admit`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

from broker import keys
from broker.account_status import usable
from broker.banned import BannedWords
from broker.choice import Chooser, LocalTime, local_time, no_account
from broker.clock import Clock, now_ms
from broker.config import Account, Settings
from broker.eligibility import AccountFilter, candidates, order_by_load
from broker.errors import NoAccount, QueueFull
from broker.ids import IdSource
from broker.models import BotType, ReturnCode, SpeedMode, Task, TaskStatus
from broker.modes import mode_for
from broker.queues import AccountQueues, Admission, DayCount
from broker.store import TaskStore

__all__ = ["Admitted", "Admitter", "create_and_admit"]

log = logging.getLogger(__name__)

_ASK_RELAX = " (ask for relax: /mj-relax/... or --relax)"

#: how long a process trusts an account status it read (the bridge's writes show up after at most this)
STATUS_TTL_SECONDS = 1.0
#: how long a process trusts the account loads it read, keeping them current with its own admissions
LOAD_TTL_SECONDS = 0.1


class Admitted(msgspec.Struct, frozen=True):
    """What admission did with a task: `code` 1/21/22, queue `position` (1-based) for 22."""

    task: Task
    code: ReturnCode
    position: int
    account: Account


async def create_and_admit(
    store: TaskStore,
    queues: AccountQueues,
    task: Task,
    account_id: str,
    *,
    core_size: int,
    queue_size: int,
    day: DayCount | None = None,
) -> tuple[Task, Admission]:
    """Write the record first (a bridge never finds a slot without its task), then admit; a rejected
    task's record (23, or 3: the daily limit) is deleted again. Raises ValueError when the id is taken.

    Both steps survive a lost reply: each is idempotent and resent once when the connection fails
    after sending (`broker.store`, `broker.queues`), so the caller gets the outcome of the admission
    that happened, never an error for a task that was admitted nor a second admission."""
    task = await store.create(task)
    admission = await queues.admit(account_id, task.id, core_size=core_size, queue_size=queue_size, day=day)
    if admission.code in (ReturnCode.QUEUE_REJECTED, ReturnCode.NOT_FOUND):
        await store.delete(task.id)
    return task, admission


class Admitter:
    """Chooses the account and admits atomically.

    :param store: the task store.
    :param queues: the account queues.
    :param settings: the settings in force (accounts, banned words).
    :param ids: the task id source.
    :param status_ttl: seconds an account status read from Redis is trusted (0 = read every time).
    :param load_ttl: seconds the account loads read from Redis are trusted (0 = read every time).
    :param clock: epoch milliseconds: the day of the daily limits, the time of the work hours.
    :param chooser: the state of the `accounts.choice` rules (tests pass one with a seeded RNG).
    """

    def __init__(
        self,
        store: TaskStore,
        queues: AccountQueues,
        settings: Settings,
        *,
        ids: IdSource | None = None,
        status_ttl: float = STATUS_TTL_SECONDS,
        load_ttl: float = LOAD_TTL_SECONDS,
        clock: Clock = now_ms,
        chooser: Chooser | None = None,
    ) -> None:
        self.clock = clock
        self.chooser = chooser or Chooser()
        self.store = store
        self.queues = queues
        self.new_id = ids or IdSource()
        self.use(settings)
        self.status_ttl = status_ttl
        self.load_ttl = load_ttl
        self._status_cache: dict[str, tuple[float, bytes | None]] = {}
        #: account id -> the bridge's "relax only" flag, read with the state (fast hours used up)
        self._relax_only: dict[str, bool] = {}
        #: account id -> (trusted until, running + waiting)
        self._load_cache: dict[str, tuple[float, int]] = {}
        #: account id -> submits of this process headed there whose admission has not answered yet
        self._headed: Counter[str] = Counter()

    def use(self, settings: Settings) -> None:
        """Switch to new settings (a config reload): accounts and banned words."""
        self.settings = settings
        self.banned = BannedWords(settings.banned_words)
        self._accounts = {a.id: a for a in settings.accounts}
        self.chooser.forget()

    async def _statuses(self, accounts: Sequence[Account]) -> list[bytes | None]:
        """The `state` of each account's live status hash, cached for `status_ttl` seconds.

        The cache saves one Redis round trip per submit (a quarter of them); a pause written by the
        bridge is seen within `status_ttl`, and the bridge requeues whatever reaches a paused account.
        """
        now = time.monotonic()
        cache = self._status_cache
        hits = [cache.get(a.id) for a in accounts]
        if all(hit is not None and hit[0] > now for hit in hits):
            return [hit[1] for hit in hits if hit is not None]
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for account in accounts:
                pipe.hmget(keys.account_status(account.id), ["state", "relax_only"])
            rows: list[list[bytes | None]] = await pipe.execute()
        found = [row[0] for row in rows]
        for account, (state, relax) in zip(accounts, rows, strict=True):
            cache[account.id] = (now + self.status_ttl, state)
            self._relax_only[account.id] = relax == b"1"
        return found

    def relax_only(self, account: Account) -> bool:
        """Whether the account's fast hours are used up (as of the last status read)."""
        return self._relax_only.get(account.id, False)

    async def choose(
        self,
        *,
        bot_type: BotType,
        account_filter: AccountFilter | None = None,
        modes: Sequence[SpeedMode] = (),
    ) -> list[Account]:
        """Accounts for a new task, in the order they are tried; `NoAccount` says why none may take it."""
        return (await self._choose(bot_type, account_filter, modes))[0]

    async def _choose(
        self, bot_type: BotType, account_filter: AccountFilter | None, modes: Sequence[SpeedMode]
    ) -> tuple[list[Account], list[str], LocalTime | None]:
        """`choose`, the reasons of the accounts left out on the way, and the operator's time."""
        settings, rule = self.settings, self.settings.account_choice
        found = candidates(settings.accounts, bot_type=bot_type, account_filter=account_filter, modes=modes)
        states = await self._statuses(found) if found else []
        timed = any(a.work_hours or a.daily_limit for a in found)  # else the time is not needed
        now = local_time(self.clock(), settings.timezone) if timed else None
        picked = self.chooser.pick(found, states, now, rule)
        refused = list(picked.refused)
        found = []
        for account in picked.open:
            if mode_for(account, modes, relax_only=self.relax_only(account)) is not None:
                found.append(account)
            else:  # auto relax (`broker.modes`): its fast hours are used up
                refused.append(f"{account.id} used up its fast hours and runs RELAX tasks only{_ASK_RELAX}")
        if not found:
            raise no_account(settings.accounts, candidates, bot_type, account_filter, modes, refused)
        if len(found) > 1:
            # the preferred speed mode first whatever the rule; loads only matter to least_busy
            loads = Counter(await self._loads(found)) + self._headed if rule == "least_busy" else {}
            found = order_by_load(found, loads, modes)
        return found, refused, now

    def _day_count(self, account: Account, *, check: bool, now: LocalTime | None = None) -> DayCount | None:
        if not account.daily_limit:  # with one, a new task (`check`) is refused once it is reached
            return None
        now = now or local_time(self.clock(), self.settings.timezone)
        return DayCount(keys.account_day_count(account.id, now.day), account.daily_limit if check else 0)

    async def _loads(self, accounts: Sequence[Account]) -> dict[str, int]:
        """running + waiting of each account, read at most every `load_ttl` seconds.

        Reading them costs two commands per account on every submit, a quarter of the web's CPU.
        Between reads, this process's own admissions keep the view current (`_count`); slots freed
        meanwhile only make it look busier than it is, and the admission itself is atomic anyway.
        """
        now = time.monotonic()
        cache = self._load_cache
        hits = [cache.get(a.id) for a in accounts]
        if all(hit is not None and hit[0] > now for hit in hits):
            return {a.id: hit[1] for a, hit in zip(accounts, hits, strict=True) if hit is not None}
        read = await self.queues.loads([a.id for a in accounts])
        until = now + self.load_ttl
        for account_id, (running, waiting) in read.items():
            cache[account_id] = (until, running + waiting)
        return {account_id: running + waiting for account_id, (running, waiting) in read.items()}

    def _count(self, account: Account, admission: Admission) -> None:
        cached = self._load_cache.get(account.id)
        if cached is not None:
            self._load_cache[account.id] = (cached[0], admission.load)

    async def account_of(self, task: Task) -> Account:
        """The account a follow-up must use (its parent's); `NoAccount` when it is gone or down."""
        account = self._accounts.get(task.instance_id or "")
        if account is None or not account.enabled:
            raise NoAccount(f"account {task.instance_id!r} of task {task.id} is not available")
        (state,) = await self._statuses([account])
        if not usable(state):
            raise NoAccount(f"account {account.id!r} is {state.decode() if state else 'down'}")
        return account

    def followup_mode(self, parent: Task, account: Account, prefix: SpeedMode | None) -> SpeedMode:
        """The mode of a button pressed on `parent`: the path prefix, else the parent's own mode.

        Call after `account_of` (which reads the account's status); `NoAccount` when the account
        cannot run that mode (not in its modes, or its fast hours are used up)."""
        wanted = [prefix] if prefix else [parent.request_mode] if parent.request_mode else []
        relax = self.relax_only(account)
        mode = mode_for(account, wanted, relax_only=relax)
        if mode is None:
            why = f"account {account.id!r} of task {parent.id} cannot run {wanted[0] if wanted else 'it'}"
            if relax:
                why += ": its fast hours are used up and it runs RELAX tasks only (use /mj-relax/...)"
            raise NoAccount(why)
        return mode

    async def submit(
        self,
        task: Task,
        *,
        blobs: Mapping[str, bytes] | None = None,
        account_filter: AccountFilter | None = None,
        modes: Sequence[SpeedMode] = (),
    ) -> Admitted:
        """Admit a new task on the first account, in the choice rule's order, that has room (1/22);
        `QueueFull` when none has, `NoAccount` when none may take it (its daily limit reached...)."""
        self.banned.check(task.prompt_en, task.prompt)
        accounts, refused, now = await self._choose(task.bot_type, account_filter, modes)
        # weighs on its account's load until admitted: concurrent submits spread, not herd
        self._headed[accounts[0].id] += 1
        try:
            task = await self._put_blobs(task, blobs)
            full: Account | None = None
            for account in accounts:
                placed = _place(task, account, mode_for(account, modes, relax_only=self.relax_only(account)))
                day = self._day_count(account, check=True, now=now)
                stored, admission = await self._create_and_admit(placed, account, blobs, day=day)
                self._count(account, admission)
                if admission.code in (ReturnCode.SUCCESS, ReturnCode.IN_QUEUE):
                    return Admitted(stored, admission.code, admission.position, account)
                if admission.code == ReturnCode.NOT_FOUND and now is not None:  # its daily limit
                    refused.append(self.chooser.reached(account, now.day))
                else:
                    full = account
                task = msgspec.structs.replace(task, id=stored.id, description=stored.description)
            await self._drop_blobs(task, blobs)
            if full is not None:  # a queue will have room again soon: worth a retry, unlike a limit
                raise QueueFull(full.channel_id)
            configured = self.settings.accounts
            raise no_account(configured, candidates, task.bot_type, account_filter, modes, refused)
        finally:
            self._headed[accounts[0].id] -= 1

    async def submit_followup(self, task: Task, *, account: Account) -> Admitted:
        """Admit an action child on its parent's account (1/22), or park it in MODAL (21)."""
        if task.status == TaskStatus.MODAL:
            stored = await self._create(task)
            return Admitted(stored, ReturnCode.EXISTED, 0, account)
        # a follow-up is counted on its account's day but never refused by the limit: the
        # client already holds the parent, and the account took it
        day = self._day_count(account, check=False)
        stored, admission = await self._create_and_admit(task, account, day=day)
        if admission.code == ReturnCode.QUEUE_REJECTED:
            raise QueueFull(account.channel_id)
        return Admitted(stored, admission.code, admission.position, account)

    async def admit_existing(self, task: Task, *, account: Account) -> Admission:
        """Admit a task already stored (a modal that was just answered)."""
        return await self.queues.admit(
            account.id,
            task.id,
            core_size=account.core_size,
            queue_size=account.queue_size,
            day=self._day_count(account, check=False),
        )

    async def _create(self, task: Task) -> Task:
        while True:
            try:
                # durable: code 21 hands the client this task's id to answer the modal with
                return await self.store.create(task, durable=True)
            except ValueError:
                task = _renamed(task, self.new_id())

    async def _create_and_admit(
        self,
        task: Task,
        account: Account,
        blobs: Mapping[str, bytes] | None = None,
        *,
        day: DayCount | None = None,
    ) -> tuple[Task, Admission]:
        while True:
            try:
                return await create_and_admit(
                    self.store,
                    self.queues,
                    task,
                    account.id,
                    core_size=account.core_size,
                    queue_size=account.queue_size,
                    day=day,
                )
            except ValueError:
                # another process drew the same id in the same millisecond: draw again
                task = await self._put_blobs(_renamed(task, self.new_id()), blobs)

    async def _put_blobs(self, task: Task, blobs: Mapping[str, bytes] | None) -> Task:
        if not blobs:
            return task
        # Blobs go in before the record so a bridge never sees a task without its images; the id is
        # checked free first so they cannot land on someone else's task.
        while await self.store.redis.exists(keys.task_record(task.id)):
            task = _renamed(task, self.new_id())
        await self.store.put_blobs(task.id, dict(blobs))
        return task

    async def _drop_blobs(self, task: Task, blobs: Mapping[str, bytes] | None) -> None:
        if blobs:
            await self.store.redis.delete(*(keys.task_blob(task.id, name) for name in blobs))


def _place(task: Task, account: Account, mode: SpeedMode | None) -> Task:
    props = msgspec.structs.replace(task.properties, discord_instance_id=account.channel_id)
    return msgspec.structs.replace(task, instance_id=account.id, properties=props, request_mode=mode)


def _renamed(task: Task, new_id: str) -> Task:
    description = task.description.replace(task.id, new_id) if task.description else None
    return msgspec.structs.replace(task, id=new_id, description=description)
