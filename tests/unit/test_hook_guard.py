"""The hook address rules: which URLs and resolved addresses may receive hooks."""

from __future__ import annotations

import pytest

from workers.hook_guard import UrlRefused, check_url, refusal


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("127.0.0.1", None),
        ("10.1.2.3", None),
        ("192.168.1.20", None),
        ("93.184.216.34", None),
        ("::1", None),
    ],
)
def test_refusal_of_addresses(address: str, reason: str | None) -> None:
    assert refusal(address) == reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme 'ftp' is not http or https"),
        ("example.com/hook", "scheme '(none)' is not http or https"),
        ("http:///hook", "the hook URL has no host"),
        ("http://example.com:99999/", "the hook URL cannot be parsed"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "host metadata.google.internal is a cloud metadata service",
        ),
        ("http://169.254.169.254/latest/meta-data/", "host 169.254.169.254 is cloud metadata"),
        ("http://[fe80::1]:8080/x", "host fe80::1 is link-local"),
    ],
)
def test_refused_urls_say_why_without_the_path(url: str, message: str) -> None:
    with pytest.raises(UrlRefused) as caught:
        check_url(url, allow_private=False)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hook", "https://hooks.example.com/mj?token=x", "http://[::1]/x"]
)
def test_allowed_urls(url: str) -> None:
    check_url(url, allow_private=False)


def test_allow_private_lifts_the_address_rules_not_the_scheme() -> None:
    check_url("http://169.254.169.254/", allow_private=True)
    with pytest.raises(UrlRefused):
        check_url("file:///etc/passwd", allow_private=True)
