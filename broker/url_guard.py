"""Which addresses a URL fetched for a client may reach: one rule for hooks, image links and prompts.

A URL passes when its scheme is ``http`` or ``https``, it has a host, and every address it reaches
is public. Refused, unless ``url_guard.allow`` names the address or the name (see `UrlGuard`):

- loopback (127/8, ::1), private (RFC 1918, ULA fc00::/7), shared (CGNAT 100.64/10);
- link-local (169.254/16, fe80::/10) and the cloud metadata services (169.254.169.254,
  fd00:ec2::254, metadata.google.internal);
- unspecified, multicast, reserved, and any other address that is not globally routable;
- IPv4 addresses wrapped in IPv6 (::ffff:a.b.c.d, 6to4, NAT64) are judged by the IPv4 address.

Two places apply the rule, so that the addresses checked are the ones connected to:

- `UrlGuard.check_url`, before any fetch and at the API's door: scheme, host, IP literals (including
  the numeric forms getaddrinfo accepts, ``2130706433``, ``0x7f.1``) and metadata names: no DNS.
- `GuardedResolver`, the resolver of the aiohttp connectors that fetch for clients: it checks the
  addresses a name resolves to when the client connects, so a name that is public for one lookup
  and internal for the next (DNS rebinding) is refused too. aiohttp does not resolve IP literals,
  which is why `check_url` must run before every request and every redirect.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from broker.errors import cut

__all__ = ["GuardedResolver", "UrlGuard", "UrlRefused", "parse_allow", "prompt_urls", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
#: a URL in a prompt: what Midjourney fetches itself (image prompts, --sref/--cref values)
_PROMPT_URL = re.compile(r"<?(https?://[^\s<>]+)>?", re.IGNORECASE)


class UrlRefused(OSError):
    """A URL the guard does not allow; the message names the host and the reason, never the path.

    An `OSError`, as a failed lookup is: raised by `GuardedResolver`, aiohttp hands it back inside
    its connector error, and the callers give the fetch up rather than retry it.
    """


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(address: str | IPAddress) -> str | None:
    """Why `address` may not be reached for a client, or None when it is public."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])
    ip = _unwrap(address)
    if ip in _METADATA_ADDRESSES or address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED:
        return "shared (CGNAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


class _Allowed(NamedTuple):
    """One ``url_guard.allow`` entry: a network or a name, on one port or (None) on every port."""

    network: IPNetwork | None
    name: str | None
    port: int | None


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def parse_allow(entry: str) -> _Allowed:
    """Parse one allow entry: ``host``, ``host:port``, ``[v6]:port`` or a CIDR; ValueError if bad.

    A host is an IP address or a name; a name allows every address it resolves to.
    """
    text = entry.strip()
    if "/" in text:
        try:
            return _Allowed(ipaddress.ip_network(text, strict=False), None, None)
        except ValueError:
            raise ValueError(f"{entry!r}: not a network (CIDR such as 10.0.0.0/8)") from None
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: write an IPv6 address with a port as [::1]:9000")
        port = _port(rest[1:], entry) if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, entry)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".").lower()
        if not _NAME.fullmatch(name):
            raise ValueError(f"{entry!r}: not an IP address, a host name or a CIDR") from None
        return _Allowed(None, name, port)
    return _Allowed(ipaddress.ip_network(ip), None, port)


def _ip_literal(host: str) -> IPAddress | None:
    """`host` as an address when it is one, in any form getaddrinfo would read as one."""
    if ":" not in host and not host[:1].isdigit():
        return None  # a name (IPv4 forms start with a digit, IPv6 has colons): skip the parsers
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    if host and host[0].isdigit() and re.fullmatch(r"[0-9a-fx.]+", host):
        try:  # 2130706433, 0x7f.1, 127.1: legacy IPv4 forms the resolver accepts
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class UrlGuard:
    """The guard with the operator's exceptions.

    :param allow: ``url_guard.allow`` entries (`parse_allow`): addresses, names or networks that
        may be reached although they are internal, e.g. ``127.0.0.1:8081`` or ``10.0.0.0/8``.
    :param allow_all: no address rule at all (the deprecated ``hooks.allow_private_addresses``);
        the scheme and host rules still apply.
    """

    def __init__(self, allow: Iterable[str] = (), *, allow_all: bool = False) -> None:
        self.allowed = tuple(parse_allow(entry) for entry in allow)
        self.allow_all = allow_all

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def cached(allow: tuple[str, ...], allow_all: bool = False) -> UrlGuard:
        """The guard for these settings, built once per process (the API checks every request)."""
        return UrlGuard(allow, allow_all=allow_all)

    def allows_name(self, name: str, port: int) -> bool:
        name = name.rstrip(".").lower()
        return self.allow_all or any(
            a.name == name and a.port in (None, port) for a in self.allowed if a.name is not None
        )

    def address_refusal(self, address: str | IPAddress, port: int) -> str | None:
        """Why `address` on `port` may not be reached, or None (public, or allowed by the config)."""
        if self.allow_all:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        reason = refusal(ip)
        if reason is None:
            return None
        for allowed in self.allowed:
            network = allowed.network
            if network is not None and allowed.port in (None, port) and ip in network:
                return None
        return reason

    def check_url(self, url: str, *, what: str = "the URL") -> None:
        """Raise `UrlRefused` when `url` may not be fetched, as far as can be told without DNS."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"{what} cannot be parsed") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UrlRefused(f"{what}: scheme {cut(repr(parts.scheme or '(none)'))} is not http or https")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise UrlRefused(f"{what} has no host")
        port = port or (443 if scheme == "https" else 80)
        if self.allow_all or self.allows_name(host, port):
            return
        if host in _METADATA_HOSTS:
            raise UrlRefused(f"{what}: host {cut(host)} is a cloud metadata service")
        ip = _ip_literal(host)
        if ip is None:
            return  # a name: its addresses are checked when the client resolves it
        reason = self.address_refusal(ip, port)
        if reason:
            raise UrlRefused(f"{what}: host {cut(host)} is {reason} (not in url_guard.allow)")

    def resolver(self, inner: AbstractResolver | None = None) -> GuardedResolver:
        """A resolver for an aiohttp connector that applies this guard to every name it looks up."""
        return GuardedResolver(self, inner)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and refuses the whole name when any of its addresses is refused.

    :param guard: the rule and its exceptions.
    :param inner: the resolver that does the lookups (default: getaddrinfo in a thread).
    """

    def __init__(self, guard: UrlGuard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if self.guard.allows_name(host, port):
            return results
        for result in results:
            reason = self.guard.address_refusal(result["host"], port)
            if reason:
                name, address = host.rstrip("."), result["host"]
                why = f"{reason}, not in url_guard.allow"
                raise UrlRefused(f"host {cut(name)} resolves to {address} ({why})")
        return results

    async def close(self) -> None:
        await self.inner.close()


def prompt_urls(prompt: str) -> list[str]:
    """The http(s) URLs in a prompt (image prompts, --sref/--cref values): Midjourney fetches them."""
    return [match.group(1) for match in _PROMPT_URL.finditer(prompt)]
