"""The image store's copy, retention and S3 backend against real servers: a local CDN stand-in,
the session's embedded Redis, and moto's S3-compatible server (ThreadedMotoServer) for the bucket."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from moto.server import ThreadedMotoServer
from PIL import Image

from broker import keys
from broker.config import Settings, parse_settings
from broker.image_fetch import ImageFetcher
from broker.image_store import ImageStore, LocalBackend, S3Backend, open_store
from broker.models import Button, Task, TaskAction
from broker.redis_server import free_port
from workers.image_copy import ImageCopier
from workers.image_retention import ImageRetention

CAP = 10 * 1024 * 1024


def _png(edge: int) -> bytes:
    image = Image.new("RGB", (edge, edge), "white")
    for n, colour in enumerate(["red", "green", "blue", "yellow"]):
        left, top = (n % 2) * edge // 2, (n // 2) * edge // 2
        image.paste(colour, (left, top, left + edge // 2, top + edge // 2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


GRID = _png(200)


class Cdn:
    """A CDN stand-in on loopback: a grid, a page, a 30 MB "image" and one that never ends."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "grid.png":
            return web.Response(body=GRID, content_type="image/png")
        if name == "page.png":
            return web.Response(text="<html>not an image</html>", content_type="image/png")
        if name == "huge.png":
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            response.enable_chunked_encoding()  # no Content-Length: counted while read
            await response.prepare(request)
            chunk = GRID + b"\0" * (1024 * 1024 - len(GRID))
            for _ in range(30):
                await response.write(chunk)
            await response.write_eof()
            return response
        if name == "expired.png":  # what Discord's CDN answers for an expired link
            return web.Response(status=404, text="This content is no longer available.")
        if name == "slow.png":
            await self._release.wait()  # until the server stops
        return web.Response(status=500)

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def cdn() -> AsyncIterator[Cdn]:
    server = Cdn()
    await server.start()
    yield server
    await server.stop()


def settings_for(cdn: Cdn, tmp_path: Path, **images: Any) -> Settings:
    return parse_settings(
        {
            "url_guard": {"allow": [f"127.0.0.1:{cdn.port}"]},
            "tasks": {"max_image_bytes": CAP},
            "images": {"backend": "local", "dir": str(tmp_path / "images"), **images},
            "server": {"host": "127.0.0.1", "port": 8099},
        },
        {},
    )


def grid_task(task_id: str, url: str) -> Task:
    buttons = [Button(custom_id=f"MJ::JOB::upsample::{n}::abc", label=f"U{n}") for n in range(1, 5)]
    return Task(id=task_id, action=TaskAction.IMAGINE, image_url=url, buttons=buttons, instance_id="a1")


def copier_for(settings: Settings, redis: aioredis.Redis) -> tuple[ImageCopier, ImageStore]:
    store = open_store(settings.images)
    assert store is not None
    fetcher = ImageFetcher(settings.link_guard(), max_bytes=settings.tasks.max_image_bytes)
    return ImageCopier(store, fetcher, redis, settings=lambda: settings, clock=lambda: 1_000_000), store


async def test_a_grid_is_stored_with_its_quarters_and_thumbnail(
    cdn: Cdn, tmp_path: Path, redis: aioredis.Redis
) -> None:
    settings = settings_for(cdn, tmp_path, public_base_url="https://img.example/")
    copier, store = copier_for(settings, redis)
    copied = await copier.copy(grid_task("1700000000000001", cdn.url("grid.png")))
    await copier.fetcher.close()
    assert copied.error is None
    assert copied.image_url == "https://img.example/mj/image/1700000000000001"
    assert [u.url for u in copied.image_urls or []] == [f"{copied.image_url}/{n}" for n in range(1, 5)]
    manifest = await store.manifest("1700000000000001")
    assert manifest is not None and manifest.image.size == len(GRID)
    colours = []
    for quarter in manifest.quarters:
        data = await store.read("1700000000000001", quarter)
        assert data is not None
        image = Image.open(io.BytesIO(data))
        assert image.size == (100, 100)
        colours.append(image.convert("RGB").getpixel((50, 50)))
    assert colours == [(255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 0)]  # U1..U4 order
    # noted for retention with the record's lifetime
    score = await redis.zscore(keys.stored_images("1700000000000001"), "1700000000000001")
    assert score == 1_000_000 + settings.tasks.retention_days * 86_400_000


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("page.png", "is not a PNG, JPEG, WebP or GIF image"),
        ("huge.png", f"is larger than {CAP} bytes"),
        ("slow.png", "the copy took longer than 2 s"),
        ("gone.png", "answered HTTP 500"),
        # a 404 is an expired link: the bridge holding a1 is asked for a fresh one (none runs here)
        ("expired.png", "the link has expired and was not refreshed: no bridge answered for account a1"),
    ],
)
async def test_a_copy_that_cannot_be_made_says_why_and_stores_nothing(
    cdn: Cdn, tmp_path: Path, redis: aioredis.Redis, name: str, why: str
) -> None:
    settings = settings_for(cdn, tmp_path, copy_timeout_seconds=2)
    copier, store = copier_for(settings, redis)
    copied = await copier.copy(grid_task("1700000000000002", cdn.url(name)))
    await copier.fetcher.close()
    assert copied.image_url is None and copied.error is not None and why in copied.error, copied.error
    assert await store.manifest("1700000000000002") is None


async def test_copies_are_deleted_once_their_task_record_is_gone(
    tmp_path: Path, redis: aioredis.Redis
) -> None:
    store = ImageStore(LocalBackend(tmp_path))
    now = [5_000_000]
    retention = ImageRetention(store, redis, clock=lambda: now[0])
    for task_id in ("1700000000000003", "1700000000000004"):
        await store.save(task_id, [], manifest_for())
        await redis.zadd(keys.stored_images(task_id), {task_id: now[0] - 1})
    # the first task's record lives on (a later write extended it), the second's is gone
    await redis.hset(keys.task_record("1700000000000003"), mapping={"v": "1", "d": "{}"})
    await redis.pexpire(keys.task_record("1700000000000003"), 60_000)
    assert await retention.sweep() == 1
    assert await store.manifest("1700000000000003") is not None
    assert await ImageStore(LocalBackend(tmp_path)).manifest("1700000000000004") is None
    assert not (tmp_path / "04" / "1700000000000004").exists()
    score = await redis.zscore(keys.stored_images("1700000000000003"), "1700000000000003")
    assert score is not None and now[0] < score <= now[0] + 60_000  # looked at again when it can be gone
    await redis.delete(keys.task_record("1700000000000003"))
    now[0] += 60_001
    assert await retention.sweep() == 1
    assert [await redis.zcard(stored) for stored in keys.STORED_IMAGES] == [0] * keys.SHARDS


def manifest_for() -> Any:
    from broker.image_store import Manifest
    from workers.image_render import stored_file

    return Manifest(image=stored_file("image.png", GRID))


# ---------------------------------------------------------------- S3 (moto's server)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test-key", aws_secret_access_key="test-secret",
    )  # fmt: skip
    client.create_bucket(Bucket="mjb-images")
    yield endpoint
    server.stop()


async def test_the_s3_backend_stores_serves_and_deletes_a_copy(
    s3_endpoint: str, cdn: Cdn, tmp_path: Path, redis: aioredis.Redis
) -> None:
    s3 = {
        "endpoint": s3_endpoint, "bucket": "mjb-images", "region": "us-east-1", "prefix": "mjb",
        "access_key_id": "${S3_KEY}", "secret_access_key": "${S3_SECRET}", "allow_http": True,
    }  # fmt: skip
    document = {
        "url_guard": {"allow": [f"127.0.0.1:{cdn.port}"]},
        "images": {"backend": "s3", "s3": s3},
    }
    settings = parse_settings(document, {"S3_KEY": "test-key", "S3_SECRET": "test-secret"})
    assert "test-secret" in settings.secrets() and "test-secret" not in repr(settings.images.s3)
    copier, store = copier_for(settings, redis)
    assert isinstance(store.backend, S3Backend)
    copied = await copier.copy(grid_task("1700000000000005", cdn.url("grid.png")))
    await copier.fetcher.close()
    assert copied.error is None, copied.error
    manifest = await ImageStore(S3Backend(settings.images)).manifest("1700000000000005")  # not cached
    assert manifest is not None and len(manifest.quarters) == 4
    assert await store.read("1700000000000005", manifest.image) == GRID
    listed = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="test-key", aws_secret_access_key="test-secret",
    ).list_objects_v2(Bucket="mjb-images", Prefix="mjb/1700000000000005/")  # fmt: skip
    names = sorted(item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"])
    assert names == ["1.png", "2.png", "3.png", "4.png", "image.png", "manifest.json", "thumb.webp"]
    assert json.loads(await store.backend.get("1700000000000005/manifest.json") or b"{}")["image"]
    await store.delete("1700000000000005")
    assert await ImageStore(S3Backend(settings.images)).manifest("1700000000000005") is None
    assert await store.backend.get("1700000000000005/1.png") is None
