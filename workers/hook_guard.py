"""Which addresses may receive notify hooks.

Only ``http``/``https`` URLs with a host. An address is refused when it is link-local (169.254/16,
fe80::/10, which includes the cloud metadata 169.254.169.254), a known metadata address or name
(fd00:ec2::254, metadata.google.internal), unspecified or multicast, unless
``hooks.allow_private_addresses``. Loopback and private LAN addresses stay allowed: the broker is
self-hosted and its hook receivers usually live on the same host or network; the addresses refused
are the ones that hand out cloud credentials or make no sense as a receiver.

Two places apply the rule: `check_url` before a delivery (scheme, names, IP literals: no DNS), and
`GuardedResolver`, the resolver of the hook client's connector, on the addresses a name resolves to
when the client connects. The addresses checked are the ones connected to, so a name that resolves to a public
address for one lookup and to the metadata service for the next (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

__all__ = ["GuardedResolver", "UrlRefused", "check_url", "refusal"]

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class UrlRefused(OSError):
    """A hook URL the guard does not allow; the message names the reason, never the full URL.

    An `OSError`, as a failed lookup; `workers.hook_http` lets it through so that the delivery is
    given up rather than retried.
    """


def refusal(address: str) -> str | None:
    """Why `address` (an IP literal) may not receive hooks, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    return None


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise `UrlRefused` when `url` may not receive hooks, as far as can be told without DNS."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UrlRefused("the hook URL cannot be parsed") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"scheme {parts.scheme or '(none)'!r} is not http or https")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("the hook URL has no host")
    if allow_private:
        return
    if host in _METADATA_HOSTS:
        raise UrlRefused(f"host {host} is a cloud metadata service")
    try:
        reason = refusal(host.strip("[]"))
    except ValueError:
        return  # a name: its addresses are checked when the client resolves it
    if reason:
        raise UrlRefused(f"host {host} is {reason}")


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and refuses the whole name when any of its addresses is refused.

    :param inner: the resolver that does the lookups (default: getaddrinfo in a thread).
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            reason = refusal(result["host"])
            if reason:
                raise UrlRefused(f"host {host.rstrip('.')} resolves to {result['host']} ({reason})")
        return results

    async def close(self) -> None:
        await self.inner.close()
