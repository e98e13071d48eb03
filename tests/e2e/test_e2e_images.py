"""The image store, end to end: every process real, the local store in the stack's folder.

A grid's SUCCESS hook already carries the store's URLs (imageUrl, the quarters, the thumbnail),
and a video task's its videos; they are served with ETag, ranges, HEAD and CORS; an expired
Discord link is refreshed through the bridge; a CDN answer that is no image leaves the task SUCCESS
with Discord's URL and the reason; and, last, with the simulator (Discord's CDN) stopped, every
stored URL still serves its image, and every stored video an mp4 that PyAV decodes.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from e2e_support import Stack, data_url, tiny_png
from PIL import Image

GRID_EDGE = 256  # mjsim renders grids of 2 x 128 px tiles


class ImageStack(Stack):
    """One account, the local image store under the stack's folder."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, accounts=1)
        self.images_dir = root / "images"

    def config(self) -> dict[str, Any]:
        images = {"backend": "local", "dir": str(self.images_dir), "copy_timeout_seconds": 10}
        return {**super().config(), "images": images}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ImageStack]:
    running = ImageStack(tmp_path_factory.mktemp("e2e-images"))
    try:
        await running.start()
        yield running
    finally:
        await running.close()


@pytest.fixture(scope="module")
async def grid(stack: ImageStack) -> dict[str, Any]:
    """A finished imagine, as its SUCCESS hook carried it."""
    reply = await stack.post(
        "/mj/submit/imagine", {"prompt": "a lighthouse in the fog", "notifyHook": stack.hook_url()}
    )
    assert reply["code"] == 1, reply
    return await stack.wait_hook(str(reply["result"]), "SUCCESS")


@pytest.fixture(scope="module")
async def video(stack: ImageStack) -> dict[str, Any]:
    """A finished video task (two videos), as its SUCCESS hook carried it."""
    body = {"prompt": "waves roll in", "image": data_url(tiny_png(3)), "batchSize": 2}
    reply = await stack.post("/mj/submit/video", {**body, "notifyHook": stack.hook_url()})
    assert reply["code"] == 1, reply
    return await stack.wait_hook(str(reply["result"]), "SUCCESS", within=30)


def frames(body: bytes) -> int:
    """How many frames PyAV decodes from an mp4."""
    with av.open(io.BytesIO(body)) as container:
        return sum(1 for _ in container.decode(video=0))


def opened(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


async def get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:  # no api key: the image routes are public
        return await client.get(url, headers=headers)


async def head(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.head(url, headers=headers)


async def test_the_success_hook_carries_the_stores_stable_urls(
    stack: ImageStack, grid: dict[str, Any]
) -> None:
    bare = f"http://127.0.0.1:{stack.web_port}/mj/image/{grid['id']}"
    base = grid["imageUrl"]
    assert re.fullmatch(re.escape(bare) + r"\.[A-Za-z0-9_-]{16}", base), base  # the id and a random token
    assert grid["imageUrls"] == [{"url": f"{base}/{n}"} for n in range(1, 5)]
    assert grid["thumbnailUrl"] == f"{base}/thumbnail"
    assert grid["properties"]["discordImageUrl"].startswith(f"http://127.0.0.1:{stack.mjsim_port}/")
    assert "finishing" not in grid["properties"] and "imageStoreError" not in grid["properties"]
    # no hook ever carried a store URL before the copy was there (the SUCCESS one is the first)
    earlier = [h for h in stack.hooks_for(grid["id"]) if h["status"] != "SUCCESS"]
    assert all("/mj/image/" not in (h.get("imageUrl") or "") for h in earlier)


async def test_etag_gives_304_and_ranges_give_206_with_cors(stack: ImageStack, grid: dict[str, Any]) -> None:
    whole = await get(grid["imageUrl"], Origin="https://front.example")
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/png"
    assert whole.headers["access-control-allow-origin"] == "*"
    assert "immutable" in whole.headers["cache-control"] and whole.headers["accept-ranges"] == "bytes"
    etag = whole.headers["etag"]
    again = await get(grid["imageUrl"], **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    size = len(whole.content)
    part = await get(grid["imageUrl"], Range="bytes=0-99")
    assert part.status_code == 206 and part.content == whole.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    tail = await get(grid["imageUrl"], Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    stale = await get(grid["imageUrl"], Range="bytes=0-9", **{"If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == whole.content
    beyond = await get(grid["imageUrl"], Range=f"bytes={size}-")
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    async with httpx.AsyncClient(timeout=10) as client:
        preflight = await client.options(
            grid["imageUrl"],
            headers={"Origin": "https://front.example", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "range"},
        )  # fmt: skip
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert "range" in preflight.headers["access-control-allow-headers"]


async def test_unknown_tasks_and_paths_outside_the_store_give_404(
    stack: ImageStack, grid: dict[str, Any]
) -> None:
    web = f"http://127.0.0.1:{stack.web_port}"
    key = grid["imageUrl"].rsplit("/", 1)[-1]
    token = key.split(".", 1)[1]
    (stack.images_dir.parent / "secret.png").write_bytes(b"not for you")
    for path in [
        "/mj/image/1234567890123456",
        f"/mj/image/{key}/5",
        f"/mj/image/{key}/manifest.json",
        # the task id alone, or with another token: the copy's URL cannot be guessed from its id
        f"/mj/image/{grid['id']}",
        f"/mj/image/{grid['id']}/1",
        f"/mj/image/{grid['id']}.{'A' * 16}",
        f"/mj/image/{grid['id']}.{token[:-1]}/thumbnail",
        f"/mj/image/{grid['id']}.{token}x",
        f"/mj/image/{grid['id']}.{token}.{token}",
        f"/mj/image/{grid['id']}.é",
        "/mj/image/..",
        "/mj/image/../secret.png",
        "/mj/image/..%2Fsecret.png",
        "/mj/image/%2E%2E/secret.png",
        "/mj/image/..%2F..%2Fetc%2Fpasswd",
        "/mj/image/%2Fetc%2Fpasswd",
        f"/mj/image/{key}/..%2F..%2Fsecret.png",
    ]:
        async with httpx.AsyncClient(base_url=web, timeout=10) as client:
            response = await client.get(httpx.URL(web + path))
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert b"not for you" not in response.content
    unknown = await get(f"{web}/mj/image/1234567890123456")
    assert unknown.json()["code"] == 4 and unknown.headers["access-control-allow-origin"] == "*"


async def test_an_expired_discord_link_is_refreshed_through_the_bridge(
    stack: ImageStack, grid: dict[str, Any]
) -> None:
    # links in messages are born expired; refresh-urls gives links of a day
    await stack.sim_control("PATCH", "/_sim/settings", {"cdn_link_seconds": 0})
    try:
        before = (await stack.sim_control("GET", "/_sim/cdn"))["refreshed"]
        reply = await stack.post("/mj/submit/imagine", {"prompt": "an old map of the sea"})
        task = await stack.wait_task(str(reply["result"]))
    finally:
        await stack.sim_control("PATCH", "/_sim/settings", {"cdn_link_seconds": 86400})
    assert task["status"] == "SUCCESS" and "imageStoreError" not in task["properties"], task
    assert f"/mj/image/{task['id']}." in task["imageUrl"]
    assert (await stack.sim_control("GET", "/_sim/cdn"))["refreshed"] > before
    expired = await get(task["properties"]["discordImageUrl"])
    assert expired.status_code == 404 and expired.text == "This content is no longer available."
    assert opened((await get(task["imageUrl"])).content).size == (GRID_EDGE, GRID_EDGE)
    # mjsim's "expire now": every link handed out so far, the grid's too, is refused from then on
    assert (await get(grid["properties"]["discordImageUrl"])).status_code == 200
    await stack.sim_control("POST", "/_sim/cdn/expire")
    assert (await get(grid["properties"]["discordImageUrl"])).status_code == 404


async def test_a_cdn_answer_that_is_no_image_leaves_the_discord_url_and_says_why(stack: ImageStack) -> None:
    # PNG's magic bytes pass the door; the rest is no image: the CDN serves it back as image/png
    fake = b"\x89PNG\r\n\x1a\n" + b"this is not an image" * 20
    reply = await stack.post("/mj/submit/describe", {"base64": data_url(fake)})
    assert reply["code"] == 1, reply
    task = await stack.wait_task(str(reply["result"]))
    assert task["status"] == "SUCCESS", task
    assert "is not a PNG, JPEG, WebP or GIF image" in task["properties"]["imageStoreError"]
    assert task["imageUrl"].startswith(f"http://127.0.0.1:{stack.mjsim_port}/")
    assert task["imageUrls"] is None and task["thumbnailUrl"] is None


async def test_head_gives_the_headers_of_a_get_without_the_body(
    stack: ImageStack, grid: dict[str, Any], video: dict[str, Any]
) -> None:
    for url in (grid["imageUrl"], grid["imageUrls"][2]["url"], grid["thumbnailUrl"], video["videoUrl"]):
        whole = await get(url)
        probe = await head(url, Origin="https://front.example")
        assert probe.status_code == 200 and probe.content == b"", url
        for name in ("content-length", "content-type", "etag", "cache-control", "accept-ranges"):
            assert probe.headers[name] == whole.headers[name], (url, name)
        assert probe.headers["content-length"] == str(len(whole.content))
        assert probe.headers["access-control-allow-origin"] == "*"
        etag = whole.headers["etag"]
        unchanged = await head(url, **{"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag, url
        part = await head(url, Range="bytes=10-19")
        assert part.status_code == 206 and part.headers["content-length"] == "10", url
        assert part.headers["content-range"] == f"bytes 10-19/{len(whole.content)}"
    missing = await head(f"http://127.0.0.1:{stack.web_port}/mj/video/1234567890123456")
    assert missing.status_code == 404 and missing.content == b""
    async with httpx.AsyncClient(timeout=10) as client:
        preflight = await client.options(
            video["videoUrl"],
            headers={"Origin": "https://front.example", "Access-Control-Request-Method": "HEAD"},
        )
    assert preflight.status_code == 204 and "HEAD" in preflight.headers["access-control-allow-methods"]


async def test_a_video_tasks_hook_carries_its_stored_videos(stack: ImageStack, video: dict[str, Any]) -> None:
    base = video["videoUrl"]
    assert base.startswith(f"http://127.0.0.1:{stack.web_port}/mj/video/{video['id']}."), base
    assert video["action"] == "VIDEO" and video["imageUrl"] == base, video
    assert video["videoUrls"] == [{"url": f"{base}/{n}"} for n in (1, 2)]
    discord = video["properties"]["discordVideoUrls"]
    assert len(discord) == 2 and all(u.startswith(f"http://127.0.0.1:{stack.mjsim_port}/") for u in discord)
    assert video["properties"]["discordImageUrl"] == discord[0]
    assert "imageStoreError" not in video["properties"] and video["thumbnailUrl"] is None
    earlier = [h for h in stack.hooks_for(video["id"]) if h["status"] != "SUCCESS"]
    assert all("/mj/video/" not in (h.get("videoUrl") or "") for h in earlier)
    first = await get(video["videoUrl"])
    assert first.status_code == 200 and first.headers["content-type"] == "video/mp4"
    assert first.content == (await get(video["videoUrls"][0]["url"])).content
    assert first.content == (await get(discord[0])).content  # the bytes Discord's CDN served
    for path in (
        f"{base}/3",
        f"{base}/0",
        f"{base}/thumbnail",
        base.replace("/mj/video/", "/mj/image/"),
        f"http://127.0.0.1:{stack.web_port}/mj/video/{video['id']}",
    ):
        assert (await get(path)).status_code == 404, path


async def test_a_stored_image_is_a_start_frame_for_a_video(stack: ImageStack, grid: dict[str, Any]) -> None:
    """The store's URL is on loopback, which neither Midjourney nor the URL guard would fetch: the web
    reads the quarter from the store and the bridge uploads it, as it would a base64 image."""
    quarter = grid["imageUrls"][1]["url"]
    body = {"prompt": "the beam turns", "image": quarter, "notifyHook": stack.hook_url()}
    reply = await stack.post("/mj/submit/video", body)
    assert reply["code"] == 1, reply
    task = await stack.wait_hook(str(reply["result"]), "SUCCESS", within=30)
    sent = task["properties"]["finalPrompt"]
    # an attachment of the simulator's CDN stands for the frame in the prompt, not our URL
    assert quarter not in sent and f"127.0.0.1:{stack.mjsim_port}/attachments/" in sent, sent
    gone = await stack.post("/mj/submit/video", {"prompt": "x", "image": f"{grid['imageUrl']}x/1"})
    assert gone["code"] == 4 and "no image at that URL" in gone["description"], gone


async def test_stored_images_outlive_the_cdn(
    stack: ImageStack, grid: dict[str, Any], video: dict[str, Any]
) -> None:
    """Last: the simulator stops for good."""
    stack.procs["mjsim"].stop()
    with pytest.raises(httpx.ConnectError):
        await get(grid["properties"]["discordImageUrl"])
    whole = await get(grid["imageUrl"])
    assert whole.status_code == 200 and opened(whole.content).size == (GRID_EDGE, GRID_EDGE)
    pixels = opened(whole.content).convert("RGB")
    for n, entry in enumerate(grid["imageUrls"]):
        quarter = await get(entry["url"])
        assert quarter.status_code == 200 and quarter.headers["content-type"] == "image/png"
        image = opened(quarter.content).convert("RGB")
        assert image.size == (GRID_EDGE // 2, GRID_EDGE // 2)
        left, top = (n % 2) * GRID_EDGE // 2, (n // 2) * GRID_EDGE // 2
        assert (
            image.tobytes() == pixels.crop((left, top, left + GRID_EDGE // 2, top + GRID_EDGE // 2)).tobytes()
        )
    thumb = await get(grid["thumbnailUrl"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert opened(thumb.content).format == "WEBP"
    # the videos: whole, they decode; a player's seek (a range) gets its bytes
    for entry in video["videoUrls"]:
        whole = await get(entry["url"])
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        assert whole.content[4:8] == b"ftyp" and frames(whole.content) > 1
        size = len(whole.content)
        seek = await get(entry["url"], Range=f"bytes={size // 2}-")
        assert seek.status_code == 206 and seek.content == whole.content[size // 2 :]
        assert seek.headers["content-range"] == f"bytes {size // 2}-{size - 1}/{size}"
