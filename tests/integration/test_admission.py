"""`Admitter` against a real Redis: the least-loaded choice with a cached view of the loads."""

from __future__ import annotations

import msgspec

from broker.admission import Admitter
from broker.config import Account, parse_settings
from broker.models import Task, TaskAction
from broker.queues import AccountQueues
from broker.store import TaskStore


def _admitter(store: TaskStore, *, load_ttl: float) -> Admitter:
    base = parse_settings({}, {})
    accounts = tuple(
        Account(id=f"a{n}", guild_id=f"g{n}", channel_id=f"c{n}", token=f"t{n}", core_size=2, queue_size=5)
        for n in (1, 2, 3)
    )
    return Admitter(
        store, AccountQueues(store.redis), msgspec.structs.replace(base, accounts=accounts), load_ttl=load_ttl
    )


async def _submit(admitter: Admitter, n: int) -> list[str]:
    placed = []
    for i in range(n):
        task = Task(id=admitter.new_id(), action=TaskAction.IMAGINE, prompt=f"p{i}", prompt_en=f"p{i}")
        placed.append((await admitter.submit(task)).account.id)
    return placed


async def test_own_admissions_keep_a_cached_view_of_the_loads_balanced(
    store: TaskStore, queues: AccountQueues
) -> None:
    admitter = _admitter(store, load_ttl=60)
    # Read once, then counted locally: an uncounted view would put every task on a1.
    assert await _submit(admitter, 6) == ["a1", "a2", "a3", "a1", "a2", "a3"]
    assert await queues.loads(["a1", "a2", "a3"]) == {
        "a1": (2, 0),
        "a2": (2, 0),
        "a3": (2, 0),
    }


async def test_loads_changed_by_others_are_seen_once_the_view_expires(
    store: TaskStore, queues: AccountQueues
) -> None:
    admitter = _admitter(store, load_ttl=0)
    for i in range(3):  # another web process filled a1
        await queues.admit("a1", f"other{i}", core_size=2, queue_size=5)
    assert await _submit(admitter, 2) == ["a2", "a3"]
