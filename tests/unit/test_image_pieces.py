"""The image store's pure parts: ranges, link expiry, the finishing steps, the cut, ids, mjsim's links."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from broker.api.image_routes import Unsatisfiable, byte_range
from broker.config import ConfigError, parse_settings
from broker.image_store import (
    LocalBackend,
    Manifest,
    StoredFile,
    new_token,
    split_key,
    store_key,
    valid_task_id,
)
from broker.models import Button, Task, TaskAction, TaskProperties
from mjsim.cdn_links import CdnLinks, query_of
from workers.finishing import finishing_step
from workers.image_copy import image_urls, is_grid, link_expired, video_urls
from workers.image_render import render_copy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=50-10", None),  # invalid: ignored
        ("bytes=-", None),
    ],
)
def test_a_range_header_selects_its_bytes(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)


def test_a_link_has_expired_when_its_ex_is_past() -> None:
    url = "https://cdn.discordapp.com/attachments/1/2/a.png?ex=65f00000&is=65e00000&hm=ab&"
    assert not link_expired(url, 0x65F00000 * 1000 - 1)
    assert link_expired(url, 0x65F00000 * 1000)
    assert not link_expired("https://cdn.discordapp.com/attachments/1/2/a.png", 10**15)
    assert not link_expired("https://cdn.example/a.png?ex=zz", 10**15)


def test_finishing_steps_follow_the_store_and_the_translation() -> None:
    task = Task(id="1", action=TaskAction.DESCRIBE, image_url="https://cdn/x.png")
    zh = Task(id="2", action=TaskAction.DESCRIBE, image_url="https://cdn/x.png",
              properties=TaskProperties(result_language="zh"))  # fmt: skip
    off = parse_settings({}, {})
    on = parse_settings({"images": {"backend": "local"}}, {})
    both = parse_settings(
        {"images": {"backend": "local"}, "translation": {"provider": "openai", "base_url": "http://t"}}, {}
    )
    assert finishing_step(off, task) is None
    assert finishing_step(on, task) == "store"
    assert finishing_step(on, Task(id="3", action=TaskAction.SHORTEN)) is None  # no image: nothing to store
    assert finishing_step(both, zh) == "translate+store"
    assert finishing_step(both, task) == "store"
    video = Task(
        id="4", action=TaskAction.VIDEO, image_url="https://cdn/v.mp4", video_url="https://cdn/v.mp4"
    )
    assert finishing_step(on, video) == "store" and finishing_step(off, video) is None


def test_a_manifests_videos_are_numbered_from_one() -> None:
    videos = [
        StoredFile(name=f"video{n}.mp4", content_type="video/mp4", size=n, etag=f'"{n}"') for n in (1, 2)
    ]
    manifest = Manifest(videos=videos)
    assert manifest.video("") is manifest.video("1") is videos[0] and manifest.video("2") is videos[1]
    for which in ("0", "3", "01", "-1", "²", "thumbnail", "1.mp4"):
        assert manifest.video(which) is None, which
    assert manifest.part("") is None and Manifest().video("") is None
    first, urls = video_urls("https://i.example", "7", count=2)
    assert first == "https://i.example/mj/video/7" and [u.url for u in urls] == [f"{first}/1", f"{first}/2"]


def test_a_grid_is_told_by_its_upscale_buttons() -> None:
    grid_buttons = [Button(custom_id="MJ::JOB::upsample::1::h"), Button(custom_id="MJ::JOB::reroll::0::h")]
    grid = Task(id="1", action=TaskAction.IMAGINE, buttons=grid_buttons)
    solo = [Button(custom_id="MJ::JOB::upsample_v7_2x_subtle::1::h::SOLO")]
    upscaled = Task(id="2", action=TaskAction.UPSCALE, buttons=solo)
    assert is_grid(grid) and not is_grid(upscaled)
    image, parts, thumb = image_urls("https://i.example", "7", quarters=0)
    assert [p.url for p in parts] == [image] and thumb == "https://i.example/mj/image/7/thumbnail"
    image, _, thumb = image_urls("https://i.example", "7", quarters=4, token="Ab-_9")
    assert image == "https://i.example/mj/image/7.Ab-_9" and thumb == f"{image}/thumbnail"


def test_a_store_key_is_the_task_id_and_its_token() -> None:
    token = new_token()
    assert len(token) == 16 and "." not in token and token != new_token()
    assert split_key(store_key("1700", token)) == ("1700", token)
    assert store_key("1700", "") == "1700" and split_key("1700") == ("1700", "")
    assert split_key("..") == ("", ".")


def test_a_single_image_has_no_quarters_and_a_webp_thumbnail() -> None:
    out = io.BytesIO()
    Image.new("RGB", (640, 320), "red").save(out, format="JPEG")
    files, width, height = render_copy(out.getvalue(), "jpg", grid=False, thumbnail_px=64)
    assert (width, height) == (640, 320)
    assert [f.name for f, _ in files] == ["image.jpg", "thumb.webp"]
    thumb = Image.open(io.BytesIO(files[-1][1]))
    assert thumb.format == "WEBP" and thumb.size == (64, 32)
    assert files[0][0].etag != files[1][0].etag and files[0][0].etag.startswith('"')


@pytest.mark.parametrize(
    "task_id", ["..", "../etc", "/etc/passwd", "a/b", "a%2Fb", "", "x" * 65, "1\x00", "C:\\x", ".hidden"]
)
def test_ids_that_could_name_a_path_are_no_task_ids(task_id: str) -> None:
    assert not valid_task_id(task_id)
    with pytest.raises(ValueError):
        LocalBackend("/tmp/store")._path(f"{task_id}/image.png")


def test_image_settings_are_checked() -> None:
    for document, message in [
        ({"images": {"backend": "s3"}}, "images.s3.bucket"),
        ({"images": {"backend": "s3", "s3": {"bucket": "b", "endpoint": "http://x"}}}, "allow_http"),
        ({"images": {"public_base_url": "img.example"}}, "public_base_url"),
        ({"images": {"copy_timeout_seconds": 0}}, "copy_timeout_seconds"),
        ({"images": {"max_video_bytes": 0}}, "max_video_bytes"),
        ({"images": {"backend": "ftp"}}, "images.backend"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_settings(document, {})
    settings = parse_settings({"server": {"host": "10.0.0.5", "port": 9000}}, {})
    assert settings.image_base_url() == "http://10.0.0.5:9000"
    public = parse_settings({"images": {"public_base_url": "https://img.example/"}}, {})
    assert public.image_base_url() == "https://img.example"


def test_mjsim_links_expire_and_refuse_a_forged_or_revoked_signature() -> None:
    links = CdnLinks()
    path = "/attachments/1/2/grid.png"
    query = query_of("http://x" + path + links.query(path, lifetime_s=60, now=1000))
    assert links.valid(path, query, require=True, now=1059)
    assert not links.valid(path, query, require=True, now=1060)  # expired
    assert not links.valid("/attachments/1/2/other.png", query, require=True, now=1000)
    assert not links.valid(path, {**query, "ex": f"{10**9:x}"}, require=True, now=1000)  # forged
    assert links.valid(path, {}, require=False) and not links.valid(path, {}, require=True)
    links.expire_all()
    assert not links.valid(path, query, require=True, now=1000)
    assert links.refused == 5


def test_the_warm_up_loads_the_codecs_the_first_copy_would() -> None:
    # In a fresh interpreter: Pillow imports its format plugins on the first save to WebP, ~0.5 s
    # that held back every copy of a worker's first second (the image-store bench's p99).
    script = (
        "import sys\n"
        "from workers.image_render import warm_up\n"
        "assert 'PIL.WebPImagePlugin' not in sys.modules\n"
        "warm_up()\n"
        "assert 'PIL.WebPImagePlugin' in sys.modules and 'PIL.JpegImagePlugin' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
