"""The sections of config.yaml that are plain settings: server, redis, discord, hooks, url_guard,
tasks, bridge and translation (`broker.config` puts them together and checks them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

__all__ = [
    "BridgeSettings",
    "DiscordSettings",
    "HookSettings",
    "ProxyEnvironment",
    "RedisSettings",
    "ServerSettings",
    "TaskSettings",
    "TranslationSettings",
    "UrlGuardSettings",
]


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    #: origins allowed by CORS; browser front ends call the API directly
    cors_origins: tuple[str, ...] = ("*",)
    #: largest request body accepted, in bytes (images arrive base64 in JSON)
    max_body_bytes: int = 32 * 1024 * 1024
    #: one log line per request (method, path, status, duration)
    access_log: bool = True
    #: `GET /metrics` asks for an api key like the API (by default it is open, as /health)
    metrics_requires_key: bool = False
    #: how often every process (web, worker, bridge) writes its metrics to Redis for /metrics
    metrics_interval_seconds: float = 5.0


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Redis is and how each process talks to it (see `broker.redis_client`)."""

    #: single: one server (`url`, or the embedded Valkey); cluster: Redis/Valkey Cluster, seeded by
    #: `urls`; sentinel: a primary with replicas found through the sentinels at `urls`
    mode: Literal["single", "cluster", "sentinel"] = "single"
    #: empty = start/use the embedded Valkey on `embedded_port` (password in `data_dir`/password)
    url: str = ""
    #: cluster seed nodes or sentinels, as ``redis://host:port`` (mode cluster or sentinel)
    urls: tuple[str, ...] = ()
    #: the servers' password (``${ENV}``) when `url`/`urls` carry none
    password: str = ""
    #: the primary's name at the sentinels (mode sentinel)
    sentinel_service: str = "mymaster"
    embedded_port: int = 6390
    data_dir: str = "var/redis"
    #: where an acknowledged write must be before the reply: "local" = in the server's fsynced AOF
    #: (`WAITAOF`), "replicated" = there and on a replica (`WAIT 1`), "none" = in the server's
    #: memory only ("replica" is the earlier name of "replicated")
    durability: Literal["none", "local", "replicated", "replica"] = "local"
    #: a command or pipeline whose reply takes longer fails (blocking commands block for less)
    command_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    #: an idle connection is PINGed before reuse after this long
    health_check_seconds: float = 30.0
    #: connections per process at most; past that a command fails instead of opening one more
    max_connections: int = 1000


class DiscordSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rest_url: str = "https://discord.com/api/v9"
    gateway_url: str = "wss://gateway.discord.gg/"
    cdn_url: str = "https://cdn.discordapp.com"
    #: where Vary (Region) masks are posted (the Midjourney activity host)
    inpaint_url: str = "https://936929561302675456.discordsays.com"
    build_number: int = 9999


class ProxyEnvironment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The proxy variables of the environment: ``http_proxy``, ``https_proxy``, ``no_proxy``.

    Either case; the lower-case one wins when both are set, as with curl and urllib.
    """

    http: str = ""
    https: str = ""
    no_proxy: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyEnvironment:
        def get(name: str) -> str:
            return environ.get(name) or environ.get(name.upper()) or ""

        return cls(http=get("http_proxy"), https=get("https_proxy"), no_proxy=get("no_proxy"))

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy URL for a request to `host`, or None to connect directly.

        NO_PROXY is a comma-separated list of ``*``, names and domains (``example.com`` and
        ``.example.com`` both cover ``hooks.example.com``) and IP addresses, matched exactly.
        """
        proxy = self.https if scheme == "https" else self.http
        host = host.strip("[]").rstrip(".").lower()
        for entry in self.no_proxy.split(","):
            name = entry.strip().lstrip(".").rstrip(".").lower()
            if name == "*" or (name and (host == name or host.endswith(f".{name}"))):
                return None
        return proxy or None


class HookSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    default_url: str = ""
    #: HMAC-SHA256 key; when set every delivery carries X-Mjbroker-Signature
    secret: str = ""
    request_timeout_seconds: float = 10.0
    #: bounds each connection attempt, TLS handshake included; a name's next address is tried 0.25 s
    #: after the previous one anyway (`workers.hook_http.HookPoster` says what bound this gives)
    connect_timeout_seconds: float = 3.0
    give_up_minutes: float = 10.0
    #: deprecated: true lifts the address rule of `url_guard` for hooks entirely (list the hook
    #: receivers in ``url_guard.allow`` instead)
    allow_private_addresses: bool = False
    concurrency: int = 64
    #: deliveries in flight to one receiver (host:port) at once: a dead receiver holds no more
    per_host_concurrency: int = 8
    #: send hooks through the proxy the environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY);
    #: off: hooks connect directly and those variables are ignored
    use_env_proxy: bool = False
    #: those variables, filled in from the environment by `parse_settings` when `use_env_proxy` is
    #: on (a value in the file is replaced)
    env_proxy: ProxyEnvironment = ProxyEnvironment()


class UrlGuardSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The guard of every URL fetched for a client: hooks, image links, prompt URLs (`broker.url_guard`).

    Loopback, private, shared, link-local, metadata, multicast and reserved addresses are refused
    unless an `allow` entry names them: ``host`` (an IP address or a name; every port),
    ``host:port``, ``[v6]:port``, or a network in CIDR form (``10.0.0.0/8``; every port).
    """

    allow: tuple[str, ...] = ()
    #: redirects an image download follows, each target checked again (hooks follow none)
    max_redirects: int = 3
    #: bound of one image download, redirects included
    timeout_seconds: float = 30.0


class TaskSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    retention_days: float = 30.0
    max_image_bytes: int = 10 * 1024 * 1024
    max_prompt_chars: int = 8192
    ledger_path: str = "var/ledger.db"
    #: how often the worker looks for timed-out tasks
    sweep_seconds: float = 5.0


class BridgeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The discord_bridge process: account leases and its polling rhythm."""

    #: an account's lease lives this long without renewal (renewed every third of it); a killed
    #: bridge's accounts move to another bridge within about this time
    lease_seconds: float = 15.0
    #: how often a bridge looks for free accounts and re-reads config.yaml
    acquire_seconds: float = 2.0
    #: how often each account's running set is re-read (the ready list is only a wake-up)
    reconcile_seconds: float = 2.0
    #: how often a held account's status is rewritten (its `updated_ms` says the bridge is alive)
    status_seconds: float = 5.0
    #: seconds to wait for the bot's modal / reply between the steps of a multi-step action
    step_timeout_seconds: float = 20.0
    #: seconds an /interactions POST may take before it counts as lost (failed, never resent)
    request_timeout_seconds: float = 15.0
    #: a task whose interaction Discord answers with a 429 waits the `retry_after` out in full (it
    #: keeps its place; the wait does not count against its timeout), unless it is longer than this:
    #: then it fails before anything is sent, "rate limited by Discord for N s"
    rate_limit_max_wait_seconds: float = 600.0


class TranslationSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Prompts in Chinese (`broker.translation`): any OpenAI-compatible chat API, or none."""

    provider: Literal["none", "openai"] = "none"
    #: e.g. https://api.openai.com/v1, a new-api relay's /v1, http://127.0.0.1:11434/v1 (Ollama)
    base_url: str = ""
    api_key: str = ""
    model: str = "gpt-4o-mini"
    #: bound of one translation, retries included; past it the text goes as written
    timeout_seconds: float = 10.0
    #: further attempts after a 5xx, a 429 or a connection failure
    retries: int = 1
    #: translate describe and shorten results into properties.finalZhPrompt for every request
    #: (without it, only for requests with `language: "zh"`)
    results_to_zh: bool = False
    #: a prompt whose translation fails is refused (code 4) instead of sent as written
    required: bool = False
    #: how long a translation is kept in Redis and reused
    cache_days: float = 7.0
