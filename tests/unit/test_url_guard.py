"""The URL guard's rules: which URLs and addresses may be reached for a client, and the allow-list."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from broker.config import ConfigError, parse_settings
from broker.image_fetch import image_type
from broker.url_guard import UrlGuard, UrlRefused, parse_allow, prompt_urls, refusal


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.20", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # documentation range: Python counts it private
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_refusal_of_addresses(address: str, reason: str | None) -> None:
    assert refusal(address) == reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "the URL: scheme 'ftp' is not http or https"),
        ("file:///etc/passwd", "the URL: scheme 'file' is not http or https"),
        ("example.com/hook", "the URL: scheme '(none)' is not http or https"),
        ("http:///hook", "the URL has no host"),
        ("http://example.com:99999/", "the URL cannot be parsed"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "the URL: host metadata.google.internal is a cloud metadata service",
        ),
        (
            "http://169.254.169.254/latest/meta-data/?secret=1",
            "the URL: host 169.254.169.254 is cloud metadata (not in url_guard.allow)",
        ),
        ("http://[fe80::1]:8080/x", "the URL: host fe80::1 is link-local (not in url_guard.allow)"),
        ("http://127.0.0.1:9000/hook", "the URL: host 127.0.0.1 is loopback (not in url_guard.allow)"),
        ("http://[::1]/x", "the URL: host ::1 is loopback (not in url_guard.allow)"),
        ("http://10.0.0.7/x", "the URL: host 10.0.0.7 is private (not in url_guard.allow)"),
        # numeric forms getaddrinfo reads as addresses
        ("http://2130706433/", "the URL: host 2130706433 is loopback (not in url_guard.allow)"),
        ("http://0x7f.1/", "the URL: host 0x7f.1 is loopback (not in url_guard.allow)"),
        ("http://127.1:8081/", "the URL: host 127.1 is loopback (not in url_guard.allow)"),
    ],
)
def test_refused_urls_say_why_without_the_path(url: str, message: str) -> None:
    with pytest.raises(UrlRefused) as caught:
        UrlGuard().check_url(url)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/mj?token=x", "http://93.184.216.34/x", "http://localhost:9000/"],
)
def test_public_urls_and_names_pass_without_dns(url: str) -> None:
    UrlGuard().check_url(url)  # a name's addresses are checked where it is resolved


def test_allow_entries_open_exactly_what_they_name() -> None:
    guard = UrlGuard(["127.0.0.1:8081", "10.0.0.0/8", "[::1]:9000", "hooks.internal:443", "192.168.1.5"])
    guard.check_url("http://127.0.0.1:8081/attachments/x.png")
    guard.check_url("http://10.20.30.40:1234/")
    guard.check_url("http://[::1]:9000/hook")
    guard.check_url("https://hooks.internal/x")
    guard.check_url("http://192.168.1.5:1/")
    for refused in (
        "http://127.0.0.1:8082/",
        "http://127.0.0.2:8081/",
        "http://[::1]:9001/",
        "http://11.0.0.1",
    ):
        if refused == "http://11.0.0.1":
            guard.check_url(refused)  # public: not about the allow-list
            continue
        with pytest.raises(UrlRefused):
            guard.check_url(refused)
    assert guard.address_refusal("127.0.0.1", 8081) is None
    assert guard.address_refusal("127.0.0.1", 80) == "loopback"
    assert guard.allows_name("HOOKS.internal.", 443) and not guard.allows_name("hooks.internal", 80)


def test_allow_all_lifts_the_address_rules_not_the_scheme() -> None:
    guard = UrlGuard(allow_all=True)
    guard.check_url("http://169.254.169.254/")
    with pytest.raises(UrlRefused):
        guard.check_url("file:///etc/passwd")


@pytest.mark.parametrize("entry", ["127.0.0.1:0", "10.0.0.0/33", "[::1", "bad host", "host:port", "::1]:80"])
def test_bad_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_allow(entry)


def test_config_names_the_bad_allow_entry() -> None:
    with pytest.raises(ConfigError, match=r"url_guard.allow\[1\]: "):
        parse_settings({"url_guard": {"allow": ["127.0.0.1:8081", "10.0.0.0/99"]}}, {})


def test_deprecated_allow_private_addresses_opens_hooks_only() -> None:
    settings = parse_settings({"hooks": {"allow_private_addresses": True}}, {})
    settings.hook_guard().check_url("http://10.0.0.1/")
    with pytest.raises(UrlRefused):
        settings.link_guard().check_url("http://10.0.0.1/")


def test_prompt_urls_are_every_link_midjourney_fetches() -> None:
    prompt = "<https://a.example/1.png> http://127.0.0.1/x.jpg a cat --sref https://b.example/s.png --v 6"
    assert prompt_urls(prompt) == [
        "https://a.example/1.png",
        "http://127.0.0.1/x.jpg",
        "https://b.example/s.png",
    ]
    assert prompt_urls("a cat in http-land") == []


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format=fmt)
    return out.getvalue()


def test_image_type_accepts_png_jpeg_webp_gif_only() -> None:
    assert [image_type(_image(f)) for f in ("PNG", "JPEG", "WEBP", "GIF")] == ["png", "jpg", "webp", "gif"]
    assert image_type(_image("BMP")) is None
    assert image_type(b"<html>not an image</html>") is None
    assert image_type(_image("PNG")[:40]) is None  # cut short: verify() fails
