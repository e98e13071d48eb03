"""Per-account consumer: claim each startable task once, then send its interaction.

A task is startable when it holds a slot (`store.running(account)`, the truth) and is still
NOT_START. The `account_ready` list only wakes the consumer up; the running set is reconciled on
start and every few seconds, so a wake-up lost in a crash costs a few seconds, never the task.

Exactly once: before anything is sent the task moves NOT_START -> SUBMITTED with a fresh nonce
through the store's compare-and-set. Only the writer that made that move sends; a task found in any
other state is never sent again, whoever crashed where. The slot is freed by the workers when the
task ends (they release every terminal task), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker import keys
from broker.models import Task, TaskStatus
from broker.store import TaskStore
from discord_bridge.health import AccountHealth, fail_task
from discord_bridge.interactions import Interactions, Plan
from discord_bridge.payloads import new_nonce
from discord_bridge.rest import Ambiguous, DiscordError, Rejected
from discord_bridge.session import Session

__all__ = ["Consumer"]

log = logging.getLogger(__name__)

#: how many claimed task ids a consumer remembers (guards against a Redis that lost recent writes)
_SENT_MEMORY = 10_000


class Consumer:
    """Takes one account's startable tasks and sends them.

    :param account_id: the account.
    :param redis: Redis client (BLPOP on the ready list).
    :param store: task store.
    :param session: the account's gateway session (must be ready before a claim).
    :param interactions: prepares and sends a task's interactions.
    :param health: the account's health (no claim unless it is ONLINE).
    :param on_unauthorized: called when Discord answers 401 (the token stopped working).
    :param reconcile_seconds: how often the running set is re-read.
    :param wait_seconds: BLPOP timeout on the ready list.
    """

    def __init__(
        self,
        account_id: str,
        *,
        redis: aioredis.Redis,
        store: TaskStore,
        session: Session,
        interactions: Interactions,
        health: AccountHealth,
        on_unauthorized: Callable[[str], None] | None = None,
        reconcile_seconds: float = 2.0,
        wait_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account_id = account_id
        self.redis = redis
        self.store = store
        self.session = session
        self.interactions = interactions
        self.health = health
        self.on_unauthorized = on_unauthorized
        self.reconcile_seconds = reconcile_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock
        self._handling: dict[str, asyncio.Task[None]] = {}
        #: ids this process claimed (sent or sending): never sent again, even if Redis forgets
        self._claimed: OrderedDict[str, None] = OrderedDict()
        #: ids seen past NOT_START: skipped by the reconcile until they leave the running set
        self._settled: set[str] = set()
        self.sent = 0
        self.failed = 0

    async def run(self) -> None:
        """Consume until cancelled."""
        ready_key = keys.account_ready(self.account_id)
        last_reconcile = 0.0
        while True:
            try:
                if time.monotonic() - last_reconcile >= self.reconcile_seconds:
                    await self.reconcile()
                    last_reconcile = time.monotonic()
                popped = await self.redis.blpop([ready_key], timeout=self.wait_seconds)
                if popped is not None:
                    self._spawn(popped[1].decode())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("account %s: consumer waits for Redis (%s)", self.account_id, exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        for task in list(self._handling.values()):
            task.cancel()
        for task in list(self._handling.values()):
            with contextlib.suppress(BaseException):
                await task

    async def reconcile(self) -> None:
        """Start every task holding a slot that is still NOT_START and not being handled here."""
        running = [task_id for task_id, _ in await self.store.running(self.account_id)]
        present = set(running)
        self._settled &= present
        for task_id in running:
            if task_id not in self._settled:
                self._spawn(task_id)

    def _spawn(self, task_id: str) -> None:
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
        """Claim and send one task; True when this call sent it."""
        if not self.health.sending or self.session.closed:
            return False
        task = await self.store.get(task_id)
        if task is None:
            return False
        if task.status != TaskStatus.NOT_START:
            self._settled.add(task_id)
            return False
        if task_id in self._claimed:
            # Redis lost our SUBMITTED write (restart without fsync): never pay twice.
            log.error("task %s is NOT_START again after this bridge sent it; not resending", task_id)
            await fail_task(
                self.store, task_id, "the broker lost track of this job after sending it; not resent"
            )
            self._settled.add(task_id)
            return False
        if not await self.session.wait_ready(30.0):
            return False
        try:
            plan = await self.interactions.prepare(task)
        except Rejected as exc:
            await self._fail(task_id, exc.reason)
            return False
        except DiscordError as exc:
            # Uploads only: nothing was paid for. Fail with the reason rather than loop.
            await self._fail(task_id, f"could not upload the images: {exc.reason}")
            return False
        claimed = await self._claim(task, plan)
        if claimed is None:
            self._settled.add(task_id)
            return False
        self._remember(task_id)
        try:
            await self.interactions.send(claimed, plan, claimed.properties.nonce or "")
        except Rejected as exc:
            await self._fail(task_id, exc.reason)
            if exc.status == 401 and self.on_unauthorized is not None:
                self.on_unauthorized(exc.reason)
            return True
        except Ambiguous as exc:
            await self._fail(task_id, exc.reason)
            return True
        except DiscordError as exc:
            await self._fail(task_id, exc.reason)
            return True
        self.sent += 1
        return True

    async def _claim(self, current: Task, plan: Plan) -> Task | None:
        """NOT_START -> SUBMITTED with a new nonce (indexed with the write); None if someone else moved it."""
        nonce = new_nonce()
        now = int(self.clock() * 1000)

        def claim(task: Task) -> Task | None:
            if task.status != TaskStatus.NOT_START:
                return None
            props = msgspec.structs.replace(
                task.properties,
                nonce=nonce,
                discord_instance_id=task.properties.discord_instance_id or self.account_id,
                image_urls=plan.image_urls or task.properties.image_urls,
            )
            changes: dict[str, object] = {}
            if plan.final_prompt and plan.image_urls:
                changes["prompt_en"] = plan.final_prompt
            return msgspec.structs.replace(
                task,
                status=TaskStatus.SUBMITTED,
                start_time=now,
                progress="0%",
                properties=props,
                instance_id=task.instance_id or self.account_id,
                **changes,
            )

        # The nonce is indexed in the write's round trip, before anything is sent.
        update = await self.store.update(current.id, claim, current=current, index=[("nonce", nonce)])
        task = update.task
        if not update.changed or task is None or task.properties.nonce != nonce:
            return None
        return task

    async def _fail(self, task_id: str, reason: str) -> None:
        self.failed += 1
        log.info("account %s: task %s failed: %s", self.account_id, task_id, reason)
        await fail_task(self.store, task_id, reason, clock=self.clock)
        self._settled.add(task_id)

    def _remember(self, task_id: str) -> None:
        self._claimed[task_id] = None
        while len(self._claimed) > _SENT_MEMORY:
            self._claimed.popitem(last=False)
