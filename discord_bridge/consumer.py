"""Per-account consumer: claim each startable task once, then send its interaction.

A task is startable when it holds a slot (`AccountQueues.running(account)`, the truth) and is still
NOT_START. The `account_ready` list only wakes the consumer up (through the account's inbox, see
`discord_bridge.inbox`); the running set is reconciled on start and every few seconds, so a wake-up
lost in a crash costs a few seconds, never the task.

Exactly once: before anything is sent the task moves NOT_START -> SUBMITTED with a fresh nonce
through the store's compare-and-set. Only the writer that made that move sends; a task found in any
other state is never sent again, whoever crashed where. The slot is freed by the workers when the
task ends (they release every terminal task), not here.

A 429 on the first interaction means Discord ran nothing. The task stays SUBMITTED, keeps its slot
and its nonce, and is "parked": `rate_limited_until` on the record says when it may go (the account
shows RATE_LIMITED meanwhile). Once the limit is over a second compare-and-set unparks it (only if
it is still SUBMITTED with that nonce: a task failed or cancelled meanwhile is never sent) and sets
`startTime`, from which its timeout counts; then it is sent. A limit longer than
`rate_limit_max_wait` seconds fails the task before anything is sent, with the reason. A bridge that
restarts finds parked tasks in the running set and resumes them the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from redis.exceptions import RedisError

from broker.account_status import AccountState
from broker.clock import Clock, now_ms
from broker.models import SpeedMode, Task, TaskStatus
from broker.queues import AccountQueues
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.health import AccountHealth
from discord_bridge.interactions import Interactions
from discord_bridge.payloads import new_nonce
from discord_bridge.plan import Plan
from discord_bridge.rest import DiscordError, RateLimited, Rejected
from discord_bridge.session import Session

__all__ = ["Consumer", "claim", "park", "unpark"]

log = logging.getLogger(__name__)

#: how many claimed task ids a consumer remembers (guards against a Redis that lost recent writes)
_SENT_MEMORY = 10_000
#: the modes a relax-only account (fast hours used up) no longer runs
_FAST_MODES = frozenset({SpeedMode.FAST, SpeedMode.TURBO})


def _relax_only_reason(account_id: str, task: Task) -> str:
    mode = task.request_mode.value if task.request_mode else "FAST"
    return (
        f"account {account_id} used up its fast hours and now runs RELAX tasks only; this {mode} task "
        "was not sent (submit it again in relax mode, /mj-relax/..., or it goes to another account)"
    )


class Consumer:
    """Takes one account's startable tasks and sends them.

    :param account_id: the account.
    :param store: task store.
    :param queues: account queues (the running set).
    :param session: the account's gateway session (must be ready before a claim).
    :param interactions: prepares and sends a task's interactions.
    :param health: the account's health (no claim unless it is ONLINE).
    :param on_unauthorized: called when Discord answers 401 (the token stopped working).
    :param rate_limit_max_wait: seconds of a 429's `retry_after` a task waits for; a longer one
        fails the task before it is sent.
    :param clock: epoch milliseconds.
    """

    def __init__(
        self,
        account_id: str,
        *,
        store: TaskStore,
        queues: AccountQueues,
        session: Session,
        interactions: Interactions,
        health: AccountHealth,
        on_unauthorized: Callable[[str], None] | None = None,
        rate_limit_max_wait: float = 600.0,
        clock: Clock = now_ms,
    ) -> None:
        self.account_id = account_id
        self.store = store
        self.queues = queues
        self.session = session
        self.interactions = interactions
        self.health = health
        self.on_unauthorized = on_unauthorized
        self.max_wait_ms = int(rate_limit_max_wait * 1000)
        self.clock = clock
        self._handling: dict[str, asyncio.Task[None]] = {}
        #: ids this process claimed (sent or sending): never sent again, even if Redis forgets
        self._claimed: OrderedDict[str, None] = OrderedDict()
        #: ids seen past NOT_START: skipped by the reconcile until they leave the running set
        self._settled: set[str] = set()
        #: claims that may be written but were not confirmed durable (`NotDurable` in a failover, or
        #: no reply), with their nonce and plan: sent once a later durable write confirms them
        #: (`_send_confirmed`)
        self._unconfirmed: dict[str, tuple[str, Plan]] = {}
        self.sent = 0
        self.failed = 0

    async def close(self) -> None:
        await cancel_and_wait(*self._handling.values())

    async def reconcile(self) -> None:
        """Start every task holding a slot that is still NOT_START and not being handled here."""
        running = [task_id for task_id, _ in await self.queues.running(self.account_id)]
        present = set(running)
        self._settled &= present
        for task_id in running:
            if task_id not in self._settled:
                self.start(task_id)

    def start(self, task_id: str) -> None:
        """Claim and send `task_id` in the background, unless it is being handled or settled."""
        if task_id in self._handling or task_id in self._settled:
            return
        task = asyncio.create_task(self._handle(task_id), name=f"send:{task_id}")
        self._handling[task_id] = task
        task.add_done_callback(lambda _: self._handling.pop(task_id, None))

    async def _handle(self, task_id: str) -> None:
        try:
            await self.start_task(task_id)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("account %s: task %s left for the next round (%s)", self.account_id, task_id, exc)
        except Exception:
            log.exception("account %s: task %s: unexpected error", self.account_id, task_id)

    async def start_task(self, task_id: str) -> bool:
        """Claim and send one task (or resume a parked one); True when this call sent it."""
        if self.session.closed:
            return False
        task = await self.store.get(task_id)
        if task is None:
            return False
        if task.status == TaskStatus.SUBMITTED and task.properties.rate_limited_until is not None:
            return await self._resume(task)
        unconfirmed = self._unconfirmed.get(task_id)
        if unconfirmed is not None and task.status == TaskStatus.SUBMITTED:
            return await self._send_confirmed(task, *unconfirmed)
        if task.status != TaskStatus.NOT_START:
            self._settled.add(task_id)
            self._unconfirmed.pop(task_id, None)  # ended (its timeout) before it was confirmed
            return False
        if not await self._may_send(task_id):
            return False
        if self.health.relax_only and task.request_mode in _FAST_MODES:
            # admitted before the fast hours ran out: sending it would only get "Credits exhausted"
            await self._fail(task_id, _relax_only_reason(self.account_id, task))
            return False
        if task_id in self._claimed:
            # Redis lost our SUBMITTED write (restart without fsync): never pay twice.
            log.error("task %s is NOT_START again after this bridge sent it; not resending", task_id)
            await self.store.fail(task_id, "the broker lost track of this job after sending it; not resent")
            self._settled.add(task_id)
            return False
        plan = await self._plan_when_ready(task)
        if plan is None:
            return False
        claimed = await self._claim(task, plan)
        if claimed is None:
            self._settled.add(task_id)
            return False
        self._remember(task_id)
        return await self._send(claimed, plan)

    async def _may_send(self, task_id: str) -> bool:
        """Whether tasks may be sent now; a rate limit longer than the task may wait fails it."""
        if self.health.sending:
            return True
        left = self.health.rate_limit_left_ms()
        if left > self.max_wait_ms:
            await self._fail(task_id, _rate_limit_reason(left / 1000))
        return False

    async def _plan_when_ready(self, task: Task) -> Plan | None:
        """The task's plan once the session is ready; None when it is not, or the task failed."""
        if not await self.session.wait_ready(30.0):
            return None
        try:
            return await self.interactions.prepare(task)
        except Rejected as exc:
            await self._fail(task.id, exc.reason)
        except DiscordError as exc:
            # Uploads only: nothing was paid for. Fail with the reason rather than loop.
            await self._fail(task.id, f"could not upload the images: {exc.reason}")
        return None

    async def _resume(self, task: Task) -> bool:
        """Send a task parked by a 429 (after a bridge restart: the plan is made again)."""
        if self.health.state not in (AccountState.ONLINE, AccountState.RATE_LIMITED):
            return False
        plan = await self._plan_when_ready(task)
        if plan is None:
            return False
        self._remember(task.id)
        return await self._send(task, plan)

    async def _send(self, task: Task, plan: Plan) -> bool:
        """Send a claimed task, waiting out 429s in full; True when Discord took it."""
        nonce = task.properties.nonce or ""
        current: Task | None = task
        while current is not None:
            if current.properties.rate_limited_until is not None:
                current = await self._after_rate_limit(current)
                if current is None:
                    return False
            try:
                await self.interactions.send(current, plan, nonce)
            except RateLimited as exc:
                current = await self._rate_limited(current, exc)
                continue
            except Rejected as exc:
                await self._fail(task.id, exc.reason)
                if exc.status == 401 and self.on_unauthorized is not None:
                    self.on_unauthorized(exc.reason)
                return True
            except DiscordError as exc:  # Ambiguous and the flows' own failures
                await self._fail(task.id, exc.reason)
                return True
            self.sent += 1
            return True
        return False

    async def _rate_limited(self, task: Task, exc: RateLimited) -> Task | None:
        """Discord ran nothing: park the task until the limit is over, or fail it if that is too long."""
        until = self.clock() + math.ceil(exc.retry_after * 1000)
        await self.health.rate_limited(until, exc.retry_after)
        if until - self.clock() > self.max_wait_ms:
            await self._fail(task.id, _rate_limit_reason(exc.retry_after))
            return None
        parked = await park(self.store, task, until=until)
        if parked is None:
            self._settled.add(task.id)
        return parked

    async def _after_rate_limit(self, task: Task) -> Task | None:
        """Wait until the task and its account may send, then unpark it (None: leave it alone)."""
        while True:
            parked_ms = (task.properties.rate_limited_until or 0) - self.clock()
            left = max(self.health.rate_limit_left_ms(), parked_ms)
            if left > self.max_wait_ms:
                await self._fail(task.id, _rate_limit_reason(left / 1000))
                return None
            if left <= 0:
                break
            await asyncio.sleep(left / 1000)
        if not self.health.sending or not await self.session.wait_ready(30.0):
            return None  # paused, disabled or disconnected: the reconcile resumes it later
        sent = await unpark(self.store, task, now=self.clock())
        if sent is None:
            self._settled.add(task.id)  # failed or cancelled while it waited: never sent
        return sent

    async def _claim(self, current: Task, plan: Plan) -> Task | None:
        nonce = new_nonce()
        self._unconfirmed.pop(current.id, None)  # a claim lost with its primary: this one replaces it
        try:
            return await claim(
                self.store,
                current,
                nonce=nonce,
                account_id=self.account_id,
                now=self.clock(),
                image_urls=plan.image_urls,
                sent_prompt=plan.final_prompt,
            )
        except RedisError:
            # Written, maybe (a durable wait that failed, a reply that never came): never sent
            # until a later durable write confirms it, and then with this nonce (the next round).
            self._unconfirmed[current.id] = (nonce, plan)
            raise

    async def _send_confirmed(self, task: Task, nonce: str, plan: Plan) -> bool:
        """Send a claim of ours that was not confirmed, once a later durable write confirms it
        (`TaskStore.confirm_durable`; a failure again leaves it for the next round)."""
        await self.store.confirm_durable(task.id)
        del self._unconfirmed[task.id]
        confirmed = await self.store.get(task.id)
        if (
            confirmed is None
            or confirmed.status != TaskStatus.SUBMITTED
            or confirmed.properties.nonce != nonce
        ):
            # Another writer's, or ours lost with its primary: the record read now is durable truth.
            return False if confirmed is None else await self.start_task(task.id)
        log.info("account %s: task %s claimed durably after a failover; sending it", self.account_id, task.id)
        self._remember(task.id)
        return await self._send(confirmed, plan)

    async def _fail(self, task_id: str, reason: str) -> None:
        self.failed += 1
        log.info("account %s: task %s failed: %s", self.account_id, task_id, reason)
        await self.store.fail(task_id, reason)
        self._settled.add(task_id)

    def _remember(self, task_id: str) -> None:
        self._claimed[task_id] = None
        while len(self._claimed) > _SENT_MEMORY:
            self._claimed.popitem(last=False)


async def claim(
    store: TaskStore,
    current: Task,
    *,
    nonce: str,
    account_id: str,
    now: int,
    image_urls: list[str] | None = None,
    sent_prompt: str | None = None,
) -> Task | None:
    """NOT_START -> SUBMITTED with `nonce`, indexed in the same round trip, before anything is sent.

    Returns the claimed task, or None when someone else moved it first (then it must not be sent).
    `current` is a first guess of the record (see `TaskStore.update`). A claim whose reply was lost
    is resent once and, finding its own write, returns the claimed task (`broker.store`): a claim
    that landed is never mistaken for one lost to another writer, which would leave the task unsent.

    :param image_urls: the reference images' CDN URLs (imagine with images), kept on the task.
    :param sent_prompt: the prompt as sent (URLs + prompt + speed-mode flag); kept as `promptEn`
        when it differs.
    """

    def mutate(task: Task) -> Task | None:
        if task.status != TaskStatus.NOT_START:
            return None
        # discordInstanceId is the channel id: web sets it at admission, the worker from the bot's
        # messages; the account's config id is not one.
        props = msgspec.structs.replace(
            task.properties, nonce=nonce, image_urls=image_urls or task.properties.image_urls
        )
        changes: dict[str, object] = {}
        if sent_prompt and (image_urls or sent_prompt != task.prompt_en):
            # image URLs in front, or the speed-mode flag behind: what the bot will echo
            changes["prompt_en"] = sent_prompt
        return msgspec.structs.replace(
            task,
            status=TaskStatus.SUBMITTED,
            start_time=now,
            progress="0%",
            properties=props,
            instance_id=task.instance_id or account_id,
            **changes,
        )

    # durable: once sent, a job is paid for; a host crash must not forget the SUBMITTED that says so
    update = await store.update(current.id, mutate, current=current, index=[("nonce", nonce)], durable=True)
    task = update.task
    if not update.changed or task is None or task.properties.nonce != nonce:
        return None
    return task


def _rate_limit_reason(seconds: float) -> str:
    return f"rate limited by Discord for {seconds:.0f} s; the job was not sent"


async def park(store: TaskStore, current: Task, *, until: int) -> Task | None:
    """Record on a claimed task that Discord refused it with a 429 and it may go at `until`.

    A quiet write (properties only): no hook. None when the task is no longer SUBMITTED with its
    nonce (failed or cancelled meanwhile).
    """
    nonce = current.properties.nonce

    def mutate(task: Task) -> Task | None:
        if task.status != TaskStatus.SUBMITTED or task.properties.nonce != nonce:
            return None
        return msgspec.structs.replace(
            task, properties=msgspec.structs.replace(task.properties, rate_limited_until=until)
        )

    update = await store.update(current.id, mutate, current=current)
    task = update.task
    if task is None or task.status != TaskStatus.SUBMITTED or task.properties.nonce != nonce:
        return None
    return task


async def unpark(store: TaskStore, current: Task, *, now: int) -> Task | None:
    """A parked task leaves its wait: `startTime` = now (its timeout counts from this send).

    The compare-and-set right before the send: None when the task is no longer SUBMITTED with its
    nonce and parked (failed, cancelled or resumed by someone else), and then it must not be sent.
    """
    nonce = current.properties.nonce

    def mutate(task: Task) -> Task | None:
        if (
            task.status != TaskStatus.SUBMITTED
            or task.properties.nonce != nonce
            or task.properties.rate_limited_until is None
        ):
            return None
        props = msgspec.structs.replace(task.properties, rate_limited_until=None)
        return msgspec.structs.replace(task, properties=props, start_time=now)

    update = await store.update(current.id, mutate, current=current)
    if not update.changed or update.task is None:
        return None
    return update.task
