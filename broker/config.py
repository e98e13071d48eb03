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

from broker.config_sections import (
    BridgeSettings,
    DiscordSettings,
    HookSettings,
    ProxyEnvironment,
    RedisSettings,
    ServerSettings,
    TaskSettings,
    TranslationSettings,
    UrlGuardSettings,
)
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
        values.append(self.redis.password)
        values += [urlsplit(u).password or "" for u in self.redis.urls]
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
    if settings.redis.mode != "single" and not settings.redis.urls:
        raise ConfigError(f"redis.urls: mode {settings.redis.mode} needs the addresses of its nodes")
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
