"""The `accounts.choice` rules, daily limits and work hours through the real `Admitter` on real Redis.

Distributions are over 1,000 admissions; the rules that draw at random get a seeded RNG, so a
bound that holds once holds every run.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from broker import keys
from broker.admission import Admitter
from broker.choice import Chooser
from broker.config import Account, AccountChoice, RedisSettings, parse_settings
from broker.errors import NoAccount
from broker.models import ReturnCode, Task, TaskAction
from broker.queues import AccountQueues
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore

N = 1000


@pytest.fixture
async def quick(redis: aioredis.Redis, redis_server: EmbeddedRedis) -> AsyncIterator[TaskStore]:
    """A store whose writes wait for no fsync: durability is not what these tests are about, and
    a thousand admissions one after the other would each wait for one."""
    client = connect(redis_server.url, RedisSettings(durability="none"))
    yield TaskStore(client, retention_seconds=3600)
    await client.aclose()


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def _admitter(
    store: TaskStore,
    rule: AccountChoice,
    accounts: list[dict[str, Any]],
    *,
    seed: int = 1,
    timezone: str = "UTC",
    clock: Clock | None = None,
    load_ttl: float = 60,
) -> Admitter:
    base = parse_settings({}, {})
    built = tuple(
        Account(
            guild_id=f"g{n}",
            channel_id=f"c{n}",
            token=f"t{n}",
            **{"core_size": N, "queue_size": 0, **spec},
        )
        for n, spec in enumerate(accounts)
    )
    settings = msgspec.structs.replace(base, accounts=built, account_choice=rule, timezone=timezone)
    return Admitter(
        store,
        AccountQueues(store.redis),
        settings,
        load_ttl=load_ttl,
        chooser=Chooser(rng=random.Random(seed)),
        **({"clock": clock} if clock else {}),
    )


def _task(admitter: Admitter, i: int) -> Task:
    return Task(id=admitter.new_id(), action=TaskAction.IMAGINE, prompt=f"p{i}", prompt_en=f"p{i}")


async def _spread(admitter: Admitter, n: int = N, *, together: int = 50) -> Counter[str]:
    """Where `n` imagines land, `together` at a time."""
    placed: Counter[str] = Counter()
    for start in range(0, n, together):
        batch = [admitter.submit(_task(admitter, i)) for i in range(start, min(n, start + together))]
        for admitted in await asyncio.gather(*batch):
            assert admitted.code == ReturnCode.SUCCESS
            placed[admitted.account.id] += 1
    return placed


async def test_weight_spreads_tasks_in_proportion_to_the_weights(quick: TaskStore) -> None:
    weights = {"a1": 1, "a2": 2, "a3": 3, "a4": 4}
    admitter = _admitter(quick, "weight", [{"id": i, "weight": w} for i, w in weights.items()])
    placed = await _spread(admitter)
    for account_id, weight in weights.items():
        assert abs(placed[account_id] / N - weight / 10) <= 0.05, placed


async def test_round_robin_spreads_tasks_exactly_evenly(quick: TaskStore, queues: AccountQueues) -> None:
    admitter = _admitter(quick, "round_robin", [{"id": f"a{n}"} for n in range(1, 5)])
    await queues.admit("a1", "other", core_size=N, queue_size=0)  # loads do not matter to it
    placed = await _spread(admitter)
    assert placed == {"a1": 250, "a2": 250, "a3": 250, "a4": 250}


async def test_random_spreads_tasks_uniformly(quick: TaskStore) -> None:
    admitter = _admitter(quick, "random", [{"id": f"a{n}"} for n in range(1, 5)], seed=3)
    placed = await _spread(admitter)
    # 250 each expected; even an unseeded run leaves [180, 320] with probability below 1e-6 (5 sigma)
    assert sorted(placed) == ["a1", "a2", "a3", "a4"]
    assert all(180 <= count <= 320 for count in placed.values()), placed


async def test_least_busy_fills_the_least_loaded_account_first(
    quick: TaskStore, queues: AccountQueues
) -> None:
    admitter = _admitter(quick, "least_busy", [{"id": "a1"}, {"id": "a2"}, {"id": "a3"}])
    for i in range(30):  # other webs loaded a1 with 30 tasks and a3 with 10
        await queues.admit("a1", f"x{i}", core_size=N, queue_size=0)
        if i < 10:
            await queues.admit("a3", f"y{i}", core_size=N, queue_size=0)
    # the first reads the loads; then this process counts its own submits, even while they are
    # admitted at the same time (10 at once here)
    assert await _spread(admitter, 1) == {"a2": 1}
    assert await _spread(admitter, 9) == {"a2": 9}
    # a2 and a3 in turn, then all three
    assert await _spread(admitter, 20) == {"a2": 10, "a3": 10}
    await _spread(admitter, N - 30)
    loads = await queues.loads(["a1", "a2", "a3"])
    # 1,040 tasks in all: the loads end level
    assert sorted(running for running, _ in loads.values()) == [346, 347, 347], loads


async def test_daily_limits_refuse_with_code_3_and_count_on_the_operators_day(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    # Tokyo (UTC+9): 14:00 UTC is 23:00 there, 15:00 UTC is the next day
    clock = Clock(_ms("2026-03-01T14:00:00"))
    admitter = _admitter(
        store,
        "least_busy",
        [{"id": "a1", "daily_limit": 3}, {"id": "a2", "daily_limit": 2}],
        timezone="Asia/Tokyo",
        clock=clock,
    )
    placed = [(await admitter.submit(_task(admitter, i))).account.id for i in range(5)]
    assert Counter(placed) == {"a1": 3, "a2": 2}
    with pytest.raises(NoAccount) as refused:
        await admitter.submit(_task(admitter, 5))
    assert refused.value.code == ReturnCode.NOT_FOUND
    assert refused.value.message == (
        "no usable account for MID_JOURNEY: a1 reached its daily limit (3), a2 reached its daily limit (2)"
    )
    assert await redis.get(keys.account_day_count("a1", "2026-03-01")) == b"3"
    ttl = await redis.pttl(keys.account_day_count("a1", "2026-03-01"))
    assert 25 * 3600_000 < ttl <= 26 * 3600_000
    # nothing of the refused task is left: no record, no queue place
    assert await queues_total(redis, ["a1", "a2"]) == 5
    # a follow-up of a task a1 took is counted, never refused
    child = msgspec.structs.replace(_task(admitter, 6), action=TaskAction.UPSCALE, instance_id="a1")
    assert (await admitter.submit_followup(child, account=admitter.settings.accounts[0])).code == 1
    assert await redis.get(keys.account_day_count("a1", "2026-03-01")) == b"4"
    clock.now_ms = _ms("2026-03-01T15:00:00")  # midnight in Tokyo
    admitted = await admitter.submit(_task(admitter, 7))
    assert admitted.code == ReturnCode.SUCCESS
    assert await redis.get(keys.account_day_count(admitted.account.id, "2026-03-02")) == b"1"


async def queues_total(redis: aioredis.Redis, account_ids: list[str]) -> int:
    loads = await AccountQueues(redis).loads(account_ids)
    return sum(running + waiting for running, waiting in loads.values())


async def test_two_webs_never_take_more_than_the_daily_limit(store: TaskStore, redis: aioredis.Redis) -> None:
    spec = [{"id": "a1", "daily_limit": 10}]
    webs = [_admitter(store, "least_busy", spec), _admitter(store, "least_busy", spec)]

    async def attempt(web: Admitter, i: int) -> bool:
        try:
            await web.submit(_task(web, i))
        except NoAccount:
            return False
        return True

    took = await asyncio.gather(*(attempt(webs[i % 2], i) for i in range(30)))
    assert sum(took) == 10
    assert await queues_total(redis, ["a1"]) == 10


async def test_accounts_without_a_daily_limit_are_not_counted(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    clock = Clock(_ms("2026-03-01T12:00:00"))
    admitter = _admitter(store, "least_busy", [{"id": "a1"}, {"id": "a2", "daily_limit": 100}], clock=clock)
    placed = await _spread(admitter, 20, together=1)
    assert placed == {"a1": 10, "a2": 10}
    assert [k async for k in redis.scan_iter(match="*:day:*")] == [
        keys.account_day_count("a2", "2026-03-01").encode()
    ]
    assert await redis.get(keys.account_day_count("a2", "2026-03-01")) == b"10"


async def test_work_hours_keep_new_tasks_off_an_account_in_the_operators_timezone(store: TaskStore) -> None:
    # Paris in winter is UTC+1
    clock = Clock(_ms("2026-01-15T07:30:00"))
    admitter = _admitter(
        store,
        "least_busy",
        [{"id": "a1", "work_hours": "09:00-17:00"}, {"id": "a2", "work_hours": "08:00-09:00"}],
        timezone="Europe/Paris",
        clock=clock,
    )
    assert (await admitter.submit(_task(admitter, 0))).account.id == "a2"  # 08:30 in Paris
    clock.now_ms = _ms("2026-01-15T08:30:00")  # 09:30
    assert (await admitter.submit(_task(admitter, 1))).account.id == "a1"
    clock.now_ms = _ms("2026-01-15T16:00:00")  # 17:00: both closed
    with pytest.raises(NoAccount) as refused:
        await admitter.submit(_task(admitter, 2))
    assert refused.value.message == (
        "no usable account for MID_JOURNEY: a1 is outside its work hours (09:00-17:00), "
        "a2 is outside its work hours (08:00-09:00)"
    )
