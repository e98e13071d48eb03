"""config.yaml -> typed, frozen settings.

Only this module reads the file and the environment. Secrets may be written as `${ENV_VAR}`;
a bad file fails with one line naming the key path and the reason (`ConfigError`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from broker.image_settings import ImageSettings, check_image_settings
from broker.models import BotType, SpeedMode
from broker.redis_password import embedded_password, existing_password
from broker.url_guard import UrlGuard, parse_allow
from broker.work_hours import parse_work_hours

log = logging.getLogger(__name__)

__all__ = [
    "Account",
    "AccountChoice",
    "ApiKey",
    "BridgeSettings",
    "ConfigError",
    "DiscordSettings",
    "HookSettings",
    "ProxyEnvironment",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "TaskSettings",
    "TranslationSettings",
    "UrlGuardSettings",
    "config_path",
    "load_settings",
]

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/136.0.0.0 Safari/537.36"
)


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line with the key path."""


class Account(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One Discord user account that runs Midjourney jobs."""

    id: str
    guild_id: str
    channel_id: str
    token: str = msgspec.field(default="")
    user_agent: str = DEFAULT_USER_AGENT
    enabled: bool = True
    core_size: int = 3
    queue_size: int = 10
    timeout_minutes: float = 5.0
    #: how long a task may wait in the queue before it fails (it never waits forever)
    queue_timeout_minutes: float = 60.0
    modes: tuple[SpeedMode, ...] = (SpeedMode.FAST, SpeedMode.RELAX)
    remix: bool = False
    niji_remix: bool = False
    bots: tuple[BotType, ...] = (BotType.MID_JOURNEY, BotType.NIJI_JOURNEY, BotType.INSIGHT_FACE)
    #: DM channels with the bots, used for the image seed (found at start when empty)
    mj_dm_channel_id: str = ""
    niji_dm_channel_id: str = ""
    remark: str = ""
    #: how often the `weight` choice rule picks this account, relative to the others
    weight: int = 1
    #: tasks admitted per day (in `timezone`) at most; reached = no new tasks until midnight. 0 = no limit
    daily_limit: int = 0
    #: when the account takes new tasks, e.g. "09:00-23:00" (`broker.work_hours`); empty = always
    work_hours: str = ""
    #: the mode a task runs in when neither its prompt, path nor accountFilter names one
    default_mode: SpeedMode = SpeedMode.FAST
    #: when the bot says the fast hours are used up: switch to relax and keep serving RELAX tasks
    #: (False: the account pauses until an operator acts)
    auto_relax: bool = True
    #: on a remix account, a V/R/pan without `enableRemix: true` answers the remix modal itself
    #: with the parent's prompt (code 1) instead of waiting for /mj/submit/modal (code 21)
    remix_auto_submit: bool = True

    def __repr__(self) -> str:
        # The token must never reach a log line through a repr.
        return f"Account(id={self.id!r}, channel_id={self.channel_id!r})"

    __str__ = __repr__


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    secret: str
    #: admin keys may also use the admin API (/mj/admin/...) and the status page (/admin)
    role: Literal["client", "admin"] = "client"

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r})"

    __str__ = __repr__


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

    #: empty = start/use the embedded Valkey on `embedded_port` (password in `data_dir`/password)
    url: str = ""
    embedded_port: int = 6390
    data_dir: str = "var/redis"
    #: where an acknowledged write must be before the reply (`WAITAOF`): "local" = in the server's
    #: fsynced AOF, "replica" = on a replica's too, "none" = in the server's memory only
    durability: Literal["none", "local", "replica"] = "local"
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


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings = ServerSettings()
    redis: RedisSettings = RedisSettings()
    discord: DiscordSettings = DiscordSettings()
    hooks: HookSettings = HookSettings()
    tasks: TaskSettings = TaskSettings()
    bridge: BridgeSettings = BridgeSettings()
    url_guard: UrlGuardSettings = UrlGuardSettings()
    translation: TranslationSettings = TranslationSettings()
    images: ImageSettings = ImageSettings()
    api_keys: tuple[ApiKey, ...] = ()
    banned_words: tuple[str, ...] = ()
    accounts: tuple[Account, ...] = ()
    #: how a new task's account is chosen among those that may take it (written `accounts.choice`
    #: in the file when `accounts` is a mapping: see `_lift_accounts`)
    account_choice: AccountChoice = "least_busy"
    #: the operator's timezone (IANA name): the day of `daily_limit`, the clock of `work_hours`
    timezone: str = "UTC"

    def account(self, account_id: str) -> Account | None:
        for account in self.accounts:
            if account.id == account_id:
                return account
        return None

    def hook_guard(self) -> UrlGuard:
        """The guard of notify hooks: `url_guard`, lifted by the deprecated allow_private_addresses."""
        return UrlGuard.cached(self.url_guard.allow, self.hooks.allow_private_addresses)

    def link_guard(self) -> UrlGuard:
        """The guard of image links and prompt URLs."""
        return UrlGuard.cached(self.url_guard.allow)

    @property
    def redis_url(self) -> str:
        """`redis.url`, else the embedded server's URL with this checkout's password (it holds a
        secret: never log it)."""
        if self.redis.url:
            return self.redis.url
        password = embedded_password(self.redis.data_dir)
        return f"redis://:{password}@127.0.0.1:{self.redis.embedded_port}/0"

    def secrets(self) -> list[str]:
        """Every secret value, so tests and log filters can check none leaks."""
        values = [a.token for a in self.accounts] + [k.secret for k in self.api_keys] + [self.hooks.secret]
        values.append(self.translation.api_key)
        values.append(self.images.s3.secret_access_key)
        proxies = (self.hooks.env_proxy.http, self.hooks.env_proxy.https)
        values += [urlsplit(p).password or "" for p in proxies]  # http://user:password@proxy:3128
        if self.redis.url:
            values.append(urlsplit(self.redis.url).password or "")
        else:
            values.append(existing_password(self.redis.data_dir) or "")
        return [v for v in values if v]

    def image_base_url(self) -> str:
        """The origin of the image URLs written into tasks: `images.public_base_url`, else the web's."""
        if self.images.public_base_url:
            return self.images.public_base_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"


#: least_busy: fewest running + waiting first; weight: at random in proportion to `weight`;
#: random: uniformly at random; round_robin: each in turn
AccountChoice = Literal["least_busy", "weight", "random", "round_robin"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(node: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REF.sub(sub, node)
    if isinstance(node, list):
        return [_expand(v, environ, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            # Snowflakes written unquoted in YAML arrive as ints; ids are strings everywhere else.
            if str(key).endswith("_id") and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            out[key] = _expand(value, environ, f"{path}.{key}" if path else str(key))
        return out
    return node


def _validate(settings: Settings) -> None:
    seen: set[str] = set()
    for i, account in enumerate(settings.accounts):
        where = f"accounts[{i}]"
        if account.id in seen:
            raise ConfigError(f"{where}.id: duplicate account id {account.id!r}")
        seen.add(account.id)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", account.id):
            raise ConfigError(f"{where}.id: use letters, digits, '_', '-' or '.' (got {account.id!r})")
        if account.core_size < 1:
            raise ConfigError(f"{where}.core_size: must be at least 1")
        if account.queue_size < 0:
            raise ConfigError(f"{where}.queue_size: must not be negative")
        if account.timeout_minutes <= 0:
            raise ConfigError(f"{where}.timeout_minutes: must be positive")
        if account.enabled and not account.token:
            raise ConfigError(f"{where}.token: an enabled account needs a token")
        if account.weight < 0:
            raise ConfigError(f"{where}.weight: must not be negative")
        if account.daily_limit < 0:
            raise ConfigError(f"{where}.daily_limit: must not be negative (0 = no limit)")
        try:
            parse_work_hours(account.work_hours)
        except ValueError as exc:
            raise ConfigError(f"{where}.work_hours: {exc}") from None
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown timezone {settings.timezone!r}") from None
    names = [k.name for k in settings.api_keys]
    if len(set(names)) != len(names):
        raise ConfigError("api_keys: names must be unique")
    for i, key in enumerate(settings.api_keys):
        if not key.secret:
            raise ConfigError(f"api_keys[{i}].secret: must not be empty")
    for i, entry in enumerate(settings.url_guard.allow):
        try:
            parse_allow(entry)
        except ValueError as exc:
            raise ConfigError(f"url_guard.allow[{i}]: {exc}") from None
    translation = settings.translation
    if translation.provider != "none" and not translation.base_url:
        raise ConfigError("translation.base_url: needed with provider openai")
    if translation.timeout_seconds <= 0:
        raise ConfigError("translation.timeout_seconds: must be positive")
    if settings.url_guard.max_redirects < 0:
        raise ConfigError("url_guard.max_redirects: must not be negative")
    images_wrong = check_image_settings(settings.images)
    if images_wrong:
        raise ConfigError(images_wrong)


def _lift_accounts(document: dict[str, Any]) -> dict[str, Any]:
    """`accounts` is the list of accounts, or a mapping of `choice` and that `list`."""
    accounts = document.get("accounts")
    if not isinstance(accounts, dict):
        return document
    unknown = set(accounts) - {"choice", "list"}
    if unknown:
        raise ConfigError(f"accounts.{sorted(unknown)[0]}: unknown key (accounts takes choice and list)")
    lifted = {k: v for k, v in document.items() if k != "accounts"}
    lifted["accounts"] = accounts.get("list") or []
    if "choice" in accounts:
        lifted["account_choice"] = accounts["choice"]
    return lifted


def parse_settings(document: Any, environ: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from an already-loaded YAML document."""
    env = os.environ if environ is None else environ
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("config: the top level must be a mapping")
    expanded = _lift_accounts(_expand(document, env, ""))
    try:
        settings = msgspec.convert(expanded, Settings, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.accounts[0].core_size`"; turn it into "accounts[0].core_size: ...".
        text = str(exc)
        reason, _, where = text.partition(" - at `$")
        key = where.rstrip("`").lstrip(".") or "config"
        key = key.replace("account_choice", "accounts.choice")
        raise ConfigError(f"{key}: {reason}") from None
    _validate(settings)
    if settings.hooks.allow_private_addresses:
        _warn_deprecated_private_addresses()
    proxies = ProxyEnvironment.from_environ(env) if settings.hooks.use_env_proxy else ProxyEnvironment()
    return msgspec.structs.replace(settings, hooks=msgspec.structs.replace(settings.hooks, env_proxy=proxies))


@functools.cache
def _warn_deprecated_private_addresses() -> None:
    # once per process: the file is parsed again on every reload
    log.warning(
        "hooks.allow_private_addresses is deprecated: it lets hooks reach any address; "
        "list the receivers in url_guard.allow instead"
    )


def config_path(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file: `path` if given, else `MJBROKER_CONFIG`, else ./config.yaml."""
    env = os.environ if environ is None else environ
    return Path(path or env.get("MJBROKER_CONFIG") or "config.yaml")


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (see `config_path`)."""
    env = os.environ if environ is None else environ
    file = config_path(path, env)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}:{where} invalid YAML") from None
    return parse_settings(document, env)
