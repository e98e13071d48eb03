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
import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from api_support import running_web
from moto.server import ThreadedMotoServer
from PIL import Image

from broker import keys
from broker.config import Settings, parse_settings
from broker.image_fetch import ImageFetcher
from broker.image_store import ImageStore, LocalBackend, Manifest, S3Backend, open_store
from broker.models import Button, Task, TaskAction, VideoUrl
from broker.redis_server import EmbeddedRedis, free_port
from workers.image_copy import ImageCopier
from workers.image_render import stored_file
from workers.image_retention import ImageRetention

CAP = 10 * 1024 * 1024
#: the simulator's clip: a real, playable H.264 mp4 (read as a file; tests import no mjsim here)
CLIP = (Path(__file__).resolve().parents[2] / "mjsim" / "assets" / "clip.mp4").read_bytes()


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
        if name in ("1.mp4", "2.mp4"):
            return web.Response(body=CLIP + name.encode(), content_type="video/mp4")
        if name == "webm.mp4":  # served as another type
            return web.Response(body=CLIP, content_type="video/webm")
        if name == "page.mp4":  # the right type, but no mp4 inside
            return web.Response(text="<html>not a video</html>", content_type="video/mp4")
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


def video_task(task_id: str, *urls: str) -> Task:
    return Task(
        id=task_id,
        action=TaskAction.VIDEO,
        image_url=urls[0],
        video_url=urls[0],
        video_urls=[VideoUrl(url=u) for u in urls],
        instance_id="a1",
    )


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
    manifest = await store.manifest("1700000000000001")
    assert manifest is not None and len(manifest.token) == 16
    assert copied.image_url == f"https://img.example/mj/image/1700000000000001.{manifest.token}"
    assert [u.url for u in copied.image_urls or []] == [f"{copied.image_url}/{n}" for n in range(1, 5)]
    assert manifest.image is not None and manifest.image.size == len(GRID)
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


async def test_two_copies_of_one_task_at_once_give_the_same_urls(
    cdn: Cdn, tmp_path: Path, redis: aioredis.Redis
) -> None:
    # the event worker adds a finishing entry for each event of a task still finishing: two lanes
    # may copy it at once, and the task keeps the URLs of whichever writes SUCCESS
    settings = settings_for(cdn, tmp_path)
    copier, _ = copier_for(settings, redis)
    task = grid_task("1700000000000009", cdn.url("grid.png"))
    first, second = await asyncio.gather(copier.copy(task), copier.copy(task))
    await copier.fetcher.close()
    assert first.image_url is not None and first.image_url == second.image_url
    manifest = await ImageStore(LocalBackend(tmp_path / "images")).manifest("1700000000000009")
    assert manifest is not None and first.image_url.endswith(f"/1700000000000009.{manifest.token}")


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


async def test_a_video_task_is_stored_whole_at_stable_urls(
    cdn: Cdn, tmp_path: Path, redis: aioredis.Redis
) -> None:
    settings = settings_for(cdn, tmp_path, public_base_url="https://img.example")
    copier, store = copier_for(settings, redis)
    copied = await copier.copy(video_task("1700000000000006", cdn.url("1.mp4"), cdn.url("2.mp4")))
    await copier.fetcher.close()
    assert copied.error is None, copied.error
    assert (copied.image_url or "").startswith("https://img.example/mj/video/1700000000000006.")
    assert [u.url for u in copied.video_urls or []] == [f"{copied.image_url}/1", f"{copied.image_url}/2"]
    assert copied.image_urls is None and copied.thumbnail_url is None
    manifest = await store.manifest("1700000000000006")
    assert manifest is not None and manifest.image is None and manifest.quarters == []
    assert [f.name for f in manifest.videos] == ["video1.mp4", "video2.mp4"]
    assert {f.content_type for f in manifest.videos} == {"video/mp4"}
    for n, stored in enumerate(manifest.videos, start=1):
        assert await store.read("1700000000000006", stored) == CLIP + f"{n}.mp4".encode()
        assert await store.read_range("1700000000000006", stored, 4, 8) == b"ftyp"
    task_id = "1700000000000006"
    assert await redis.zscore(keys.stored_images(task_id), task_id) is not None  # retention knows it


@pytest.mark.parametrize(
    ("name", "cap", "why"),
    [
        ("webm.mp4", None, "is not an MP4 video"),
        ("page.mp4", None, "is not an MP4 video"),
        ("2.mp4", len(CLIP), f"is larger than {len(CLIP)} bytes"),
        ("gone.mp4", None, "answered HTTP 500"),
    ],
)
async def test_a_video_copy_that_cannot_be_made_says_why_and_stores_nothing(
    cdn: Cdn, tmp_path: Path, redis: aioredis.Redis, name: str, cap: int | None, why: str
) -> None:
    settings = settings_for(cdn, tmp_path, **({"max_video_bytes": cap} if cap else {}))
    copier, store = copier_for(settings, redis)
    # the first video is fine: one bad video of the set leaves the whole set with Discord's URLs
    copied = await copier.copy(video_task("1700000000000007", cdn.url("1.mp4"), cdn.url(name)))
    await copier.fetcher.close()
    assert copied.image_url is None and copied.video_urls is None
    assert copied.error is not None and copied.error.startswith("videos not stored: ") and why in copied.error
    assert await store.manifest("1700000000000007") is None


async def test_copies_are_deleted_once_their_task_record_is_gone(
    tmp_path: Path, redis: aioredis.Redis
) -> None:
    store = ImageStore(LocalBackend(tmp_path))
    now = [5_000_000]
    retention = ImageRetention(store, redis, clock=lambda: now[0])
    for task_id in ("1700000000000003", "1700000000000004"):
        await store.save(task_id, [], manifest_for())
        await redis.zadd(keys.stored_images(task_id), {task_id: now[0] - 1})
    # the second is a video task's copy: its mp4 goes with it
    await store.save("1700000000000004", [(stored_file("video1.mp4", CLIP), CLIP)], manifest_for())
    assert (tmp_path / "04" / "1700000000000004" / "video1.mp4").read_bytes() == CLIP
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
    assert manifest is not None and manifest.image is not None and len(manifest.quarters) == 4
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


# ---------------------------------------------------------------- a large file, served by the web


async def test_the_web_streams_a_large_video_and_reads_only_a_ranges_bytes(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # 3.5 MB: past the web's 1 MB reads, so sent as read, and ranges cross read boundaries
    big = CLIP + bytes(range(256)) * (3_500_000 // 256)
    store = ImageStore(LocalBackend(tmp_path / "images"))
    video = stored_file("video1.mp4", big)
    await store.save("1700000000000008", [(video, big)], Manifest(videos=[video]))
    images = {"backend": "local", "dir": str(tmp_path / "images")}
    with running_web(redis_server, images=images) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
            whole = await client.get("/mj/video/1700000000000008")
            assert whole.status_code == 200 and whole.content == big
            assert whole.headers["content-length"] == str(len(big))
            assert whole.headers["content-type"] == "video/mp4" and whole.headers["etag"] == video.etag
            for first, last in ((1_048_570, 2_097_160), (0, 0), (len(big) - 5, len(big) - 1)):
                part = await client.get(
                    "/mj/video/1700000000000008/1", headers={"Range": f"bytes={first}-{last}"}
                )
                assert part.status_code == 206 and part.content == big[first : last + 1], (first, last)
                assert part.headers["content-length"] == str(last - first + 1)
            probe = await client.head("/mj/video/1700000000000008")
            assert probe.status_code == 200 and probe.content == b""
            assert probe.headers["content-length"] == str(len(big))
            # a copy made before tokens (none in its manifest) is served at the bare id it was given
            # (above), and with no token
            assert (await client.get("/mj/video/1700000000000008.abc")).status_code == 404
