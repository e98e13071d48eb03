"""/mj/submit/* over real HTTP against a real granian web process and Redis."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import AUTH, HOOK_SECRET, TOKEN_A1, WebProcess, account, running_web

from broker import keys
from broker.account_status import AccountState
from broker.queues import AccountQueues
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from discord_bridge.health import AccountHealth

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
JPG_B64 = base64.b64encode(JPG).decode()


@pytest.fixture
def store(redis: aioredis.Redis) -> TaskStore:
    return TaskStore(redis, retention_seconds=3600)


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_imagine_returns_started_task_with_16_digit_id(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    reply = await _post(client, "/mj/submit/imagine", {"prompt": "  a cat  ", "state": "s1"})
    assert reply["code"] == 1 and reply["description"] == "Submit success"
    assert reply["properties"] == {"discordInstanceId": "1200000000000000001"}
    task = await store.get(reply["result"])
    assert task is not None and len(task.id) == 16 and task.id.isdigit()
    assert (task.prompt, task.prompt_en, task.description, task.state) == (
        "a cat",
        "a cat",
        "/imagine a cat",
        "s1",
    )
    assert task.status == "NOT_START" and task.progress is None and task.instance_id == "a1"
    assert task.api_key_name == "tests"


async def test_fifty_concurrent_imagines_give_3_started_10_queued_37_rejected(
    client: httpx.AsyncClient, store: TaskStore, redis: aioredis.Redis, queues: AccountQueues
) -> None:
    replies = await asyncio.gather(
        *(_post(client, "/mj/submit/imagine", {"prompt": f"cat {i}"}) for i in range(50))
    )
    codes = Counter(r["code"] for r in replies)
    assert codes == {1: 3, 22: 10, 23: 37}
    positions = sorted(r["properties"]["numberOfQueues"] for r in replies if r["code"] == 22)
    assert positions == list(range(1, 11))
    assert all(r["result"] is None for r in replies if r["code"] == 23)
    assert all(
        r["description"] == "Queue is full, please try again later" for r in replies if r["code"] == 23
    )
    queued = next(r for r in replies if r["code"] == 22 and r["properties"]["numberOfQueues"] == 2)
    assert queued["description"] == "In queue, there are 2 tasks ahead"
    accepted = [r["result"] for r in replies if r["code"] in (1, 22)]
    assert len(await store.get_many_raw(accepted)) == 13
    assert len(await redis.keys(keys.TASK_RECORDS_MATCH)) == 13
    assert (await queues.loads(["a1"]))["a1"] == (3, 10)


async def test_banned_word_gives_24_and_stores_nothing(
    client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    reply = await _post(client, "/mj/submit/imagine", {"prompt": "a FORBIDDEN dream"})
    assert reply == {
        "code": 24,
        "description": "Banned word detected: FORBIDDEN",
        "result": None,
        "properties": {"promptEn": "a FORBIDDEN dream", "bannedWord": "FORBIDDEN"},
    }
    assert (await _post(client, "/mj/submit/imagine", {"prompt": "forbiddenness"}))["code"] == 1
    assert (await _post(client, "/mj/submit/shorten", {"prompt": "a bad word here"}))["code"] == 24
    assert len(await redis.keys(keys.TASK_RECORDS_MATCH)) == 1


async def test_reference_images_are_stored_as_blobs(client: httpx.AsyncClient, store: TaskStore) -> None:
    reply = await _post(
        client, "/mj/submit/imagine", {"prompt": "x", "base64Array": [PNG_URL], "base64": JPG_B64}
    )
    task = await store.get(reply["result"])
    assert task is not None and task.properties.attachments == ["0.png", "1.jpg"]
    assert await store.get_blob(task.id, "0.png") == PNG
    assert await store.get_blob(task.id, "1.jpg") == JPG


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "   "}, "prompt must not be blank"),
        ({"prompt": "x", "base64Array": ["data:image/png;base64,!!!"]}, "not valid base64"),
        ({"prompt": "x", "base64Array": [base64.b64encode(b"hello world").decode()]}, "not a PNG"),
        ({"prompt": "x", "state": "s" * 256}, "state is longer"),
        ({"prompt": "x", "notifyHook": "ftp://example.com/x"}, "notifyHook must be an http"),
        ({"prompt": "x", "notifyHook": "http://e.com/" + "a" * 2000}, "notifyHook is longer"),
        ({"prompt": "x" * 9000}, "prompt is longer"),
    ],
)
async def test_invalid_imagine_gives_4_with_the_reason(
    client: httpx.AsyncClient, redis: aioredis.Redis, body: dict[str, Any], message: str
) -> None:
    reply = await _post(client, "/mj/submit/imagine", body)
    assert reply["code"] == 4 and message in reply["description"]
    assert not await redis.keys(keys.TASK_RECORDS_MATCH)


async def test_oversized_image_gives_4(client: httpx.AsyncClient) -> None:
    big = "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * (11 * 1024 * 1024)).decode()
    reply = await _post(client, "/mj/submit/imagine", {"prompt": "x", "base64Array": [big]})
    assert reply["code"] == 4 and "larger than" in reply["description"]


async def test_notify_hook_and_default(
    redis_server: EmbeddedRedis, redis: aioredis.Redis, store: TaskStore
) -> None:
    default = "https://default.example/hook"
    hooks = {"secret": HOOK_SECRET, "default_url": default}
    with running_web(redis_server, hooks=hooks) as web:
        async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=30) as client:
            own = await _post(
                client, "/mj/submit/imagine", {"prompt": "x", "notifyHook": "https://hooks.example/cb"}
            )
            plain = await _post(client, "/mj/submit/imagine", {"prompt": "y"})
    hooked, defaulted = await store.get(own["result"]), await store.get(plain["result"])
    assert hooked is not None and hooked.properties.notify_hook == "https://hooks.example/cb"
    assert defaulted is not None and defaulted.properties.notify_hook == default


async def test_speed_mode_prefix_sets_the_task_mode(client: httpx.AsyncClient, store: TaskStore) -> None:
    relax = await _post(client, "/mj-relax/mj/submit/imagine", {"prompt": "x"})
    flagged = await _post(client, "/mj/submit/imagine", {"prompt": "x --fast"})
    plain = await _post(client, "/mj/submit/imagine", {"prompt": "x"})
    modes = [(await store.get(r["result"])).request_mode for r in (relax, flagged, plain)]  # type: ignore[union-attr]
    assert modes == ["RELAX", "FAST", "FAST"]  # the last one: the account's default_mode
    turbo = await _post(client, "/mj-turbo/mj/submit/imagine", {"prompt": "x"})
    assert turbo["code"] == 3  # a1 has no TURBO


async def test_conflicting_mode_flags_are_code_4_and_store_nothing(
    client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    async def tasks() -> int:
        return len([k async for k in redis.scan_iter(match=keys.TASK_RECORDS_MATCH)])

    before = await tasks()
    against_path = await _post(client, "/mj-relax/mj/submit/imagine", {"prompt": "x --fast"})
    two_flags = await _post(client, "/mj/submit/imagine", {"prompt": "x --fast --turbo"})
    assert against_path["code"] == 4 and "--fast" in against_path["description"]
    assert two_flags["code"] == 4 and "more than one speed mode" in two_flags["description"]
    assert await tasks() == before


async def test_describe_blend_shorten_and_swap(client: httpx.AsyncClient, store: TaskStore) -> None:
    described = await _post(client, "/mj/submit/describe", {"base64": PNG_URL})
    task = await store.get(described["result"])
    assert task is not None and task.action == "DESCRIBE" and task.description == f"/describe {task.id}.png"
    linked = await _post(client, "/mj/submit/describe", {"link": "https://cdn.example/x.png"})
    task = await store.get(linked["result"])
    assert task is not None and task.properties.image_urls == ["https://cdn.example/x.png"]
    assert (await _post(client, "/mj/submit/describe", {}))["code"] == 4

    blended = await _post(
        client, "/mj/submit/blend", {"base64Array": [PNG_URL, JPG_B64], "dimensions": "PORTRAIT"}
    )
    task = await store.get(blended["result"])
    assert task is not None and task.action == "BLEND" and task.description == f"/blend {task.id} 2"
    assert task.properties.blend_dimensions == "PORTRAIT" and task.properties.attachments == [
        "0.png",
        "1.jpg",
    ]
    assert (await _post(client, "/mj/submit/blend", {"base64Array": [PNG_URL]}))["code"] == 4
    assert (await _post(client, "/mj/submit/blend", {"base64Array": [PNG_URL] * 6}))["code"] == 4
    default = await _post(client, "/mj/submit/blend", {"base64Array": [PNG_URL, PNG_URL]})
    assert default["code"] == 22  # a1's three slots are taken by now
    task = await store.get(default["result"])
    assert task is not None and task.properties.blend_dimensions == "SQUARE"

    shortened = await _post(client, "/mj/submit/shorten", {"prompt": "a very long prompt"})
    task = await store.get(shortened["result"])
    assert task is not None and task.action == "SHORTEN" and task.description == "/shorten a very long prompt"

    swapped = await _post(
        client, "/mj/insight-face/swap", {"sourceBase64": PNG_URL, "targetUrl": "https://x.example/t.png"}
    )
    task = await store.get(swapped["result"])
    assert task is not None and task.action == "SWAP_FACE" and task.bot_type == "INSIGHT_FACE"
    assert task.properties.attachments == ["source.png"] and task.properties.image_urls == [
        "https://x.example/t.png"
    ]
    assert (await _post(client, "/mj/insight-face/swap", {"sourceUrl": "https://a/b.png"}))["code"] == 4
    same = {"sourceUrl": "https://a/b.png", "targetUrl": "https://a/b.png"}
    assert (await _post(client, "/mj/insight-face/swap", same))["code"] == 4


@pytest.fixture(scope="module")
def two_accounts(redis_server: EmbeddedRedis) -> Iterator[WebProcess]:
    """Open API (no keys); a1 MJ-only FAST, a2 remix on with FAST/RELAX; a3 disabled."""
    with running_web(
        redis_server,
        env={"MJBROKER_STATUS_TTL_SECONDS": "0", "MJBROKER_LOAD_TTL_SECONDS": "0"},
        api_keys=[],
        accounts=[
            account("a1", 1, TOKEN_A1, bots=["MID_JOURNEY"], modes=["FAST"], core_size=1, queue_size=1),
            account("a2", 2, "tok-a2-other", remix=True, modes=["FAST", "RELAX"], core_size=1, queue_size=1),
            account("a3", 3, "", enabled=False),
        ],
    ) as process:
        yield process


@pytest.fixture
async def open_client(two_accounts: WebProcess, redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=two_accounts.url, timeout=30) as c:
        yield c


async def test_least_loaded_account_first_then_next_when_full(open_client: httpx.AsyncClient) -> None:
    got = [await _post(open_client, "/mj/submit/imagine", {"prompt": f"x{i}"}) for i in range(5)]
    assert [(r["code"], r["properties"].get("discordInstanceId")) for r in got] == [
        (1, "1200000000000000001"),
        (1, "1200000000000000002"),
        (22, "1200000000000000001"),
        (22, "1200000000000000002"),
        (23, "1200000000000000002"),
    ]


async def test_no_usable_account_gives_3(
    open_client: httpx.AsyncClient, redis: aioredis.Redis, store: TaskStore
) -> None:
    health = AccountHealth(redis, store, AccountQueues(redis), "a2", bridge_id="bridge-1")
    await health.set(AccountState.PAUSED, "captcha")  # as a2's bridge reports it
    niji = await _post(open_client, "/mj/submit/imagine", {"prompt": "x", "botType": "NIJI_JOURNEY"})
    assert niji["code"] == 3 and "no usable account" in niji["description"]
    relax = await _post(open_client, "/mj-relax/mj/submit/imagine", {"prompt": "x"})
    assert relax["code"] == 3
    pinned = await _post(
        open_client, "/mj/submit/imagine", {"prompt": "x", "accountFilter": {"instanceId": "a2"}}
    )
    assert pinned["code"] == 3
    await health.set(AccountState.ONLINE)
    pinned = await _post(
        open_client, "/mj/submit/imagine", {"prompt": "x", "accountFilter": {"instanceId": "a2"}}
    )
    assert pinned["code"] == 1 and pinned["properties"]["discordInstanceId"] == "1200000000000000002"


async def test_open_api_needs_no_secret(open_client: httpx.AsyncClient, two_accounts: WebProcess) -> None:
    assert (await open_client.get("/mj/account/list")).status_code == 200
    assert "no api_keys configured" in two_accounts.log()
