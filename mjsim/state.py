"""In-memory world of the simulator: settings, accounts, channels, messages, jobs, uploads, counters."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from mjsim.apps import BOTS, INSIGHTFACE, MIDJOURNEY, NIJI
from mjsim.cdn_links import CdnLinks
from mjsim.ids import IdFactory

__all__ = [
    "Account",
    "AccountSpec",
    "Channel",
    "Counters",
    "JobRecord",
    "Mode",
    "SimSettings",
    "SimState",
]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

#: How many messages each channel remembers (older ones are forgotten, like a cache).
MESSAGES_PER_CHANNEL = 300


class Mode(StrEnum):
    """Generation speed mode of an account."""

    FAST = "fast"  #: "(fast)" in contents
    RELAX = "relax"  #: "(relaxed)" in contents
    TURBO = "turbo"  #: "(turbo)" in contents

    @property
    def label(self) -> str:
        return "relaxed" if self is Mode.RELAX else self.value


class SimSettings(msgspec.Struct, kw_only=True):
    """Tunable timing of the simulated bots (mutable through the control API)."""

    #: seconds a job takes from start to final message, multiplied by ``speed``
    job_seconds: float = 2.0
    #: progress MESSAGE_UPDATEs per grid job
    progress_steps: int = 3
    #: multiplier on every bot delay; 0 = no waiting between steps
    speed: float = 1.0
    #: seconds between the 204 and INTERACTION_CREATE/SUCCESS; discord.py-self only starts
    #: waiting for INTERACTION_SUCCESS once its POST returned, so this must not be 0 for it
    ack_delay: float = 0.05
    #: gateway heartbeat interval in ms sent in HELLO
    heartbeat_interval: int = 41250
    #: prompts containing any of these words get "Banned prompt detected"
    banned_words: list[str] = msgspec.field(default_factory=lambda: ["bannedword"])
    #: seconds a detached gateway session stays resumable
    resume_window: float = 300.0
    #: a relax job takes this many times as long as a fast one; a turbo job this many times
    relax_factor: float = 2.0
    turbo_factor: float = 0.5
    #: lifetime of the CDN links in messages (`mjsim.cdn_links`; Discord's: about a day)
    cdn_link_seconds: float = 86400.0
    #: lifetime of the links /attachments/refresh-urls gives
    cdn_refresh_seconds: float = 86400.0
    #: the CDN refuses links without ex/is/hm (Discord does; off: tests may fetch bare paths)
    cdn_require_signature: bool = False


class AccountSpec(msgspec.Struct, kw_only=True):
    """What is needed to create an account; every field is generated when omitted."""

    token: str | None = None
    user_id: str | None = None
    username: str | None = None
    guild_id: str | None = None
    channel_id: str | None = None
    dm_channels: dict[str, str] | None = None  #: bot key -> DM channel id


@dataclass
class Account:
    """A user account with its Midjourney-side preferences and fault flags."""

    token: str
    user_id: str
    username: str
    guild_id: str
    channel_id: str
    dm_channels: dict[str, str]
    mode: Mode = Mode.FAST
    remix: bool = False
    stealth: bool = False
    high_variation: bool = True
    concurrency: int = 3
    queue_limit: int = 10
    banned: bool = False
    captcha: bool = False
    subscription: str = "active"  #: "active" | "expired" | "none"
    #: the fast hours are used up: FAST and TURBO jobs get "Credits exhausted"
    fast_exhausted: bool = False
    #: jobs started, by the mode they ran in ("fast", "relax", "turbo")
    jobs_by_mode: Counter[str] = field(default_factory=Counter)
    running: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def user(self) -> Payload:
        return {
            "id": self.user_id,
            "username": self.username,
            "discriminator": "0",
            # A real-looking avatar hash (fixtures carry strings here, never null).
            "avatar": hashlib.md5(self.user_id.encode()).hexdigest(),
            "avatar_decoration": None,
            "display_name": None,
            "global_name": self.username,
            "public_flags": 0,
            "bot": False,
        }

    def summary(self, base_url: str, gateway_url: str) -> Payload:
        return {
            "token": self.token,
            "userId": self.user_id,
            "username": self.username,
            "guildId": self.guild_id,
            "channelId": self.channel_id,
            "dmChannels": dict(self.dm_channels),
            "baseUrl": base_url,
            "gatewayUrl": gateway_url,
        }

    def settings_payload(self) -> Payload:
        return {
            "mode": self.mode.value,
            "remix": self.remix,
            "stealth": self.stealth,
            "high_variation": self.high_variation,
            "concurrency": self.concurrency,
            "queue_limit": self.queue_limit,
            "banned": self.banned,
            "captcha": self.captcha,
            "subscription": self.subscription,
            "fast_exhausted": self.fast_exhausted,
            "jobs_by_mode": dict(self.jobs_by_mode),
            "running": self.running,
            "queued": len(self.waiters),
        }


@dataclass
class Channel:
    """A guild text channel or a DM between one user and one bot."""

    id: str
    guild_id: str | None
    name: str
    members: set[str]  #: user ids that receive this channel's messages
    bot_id: str | None = None  #: DM recipient
    messages: OrderedDict[str, Payload] = field(default_factory=OrderedDict)

    def remember(self, message: Payload) -> None:
        self.messages[message["id"]] = message
        self.messages.move_to_end(message["id"])
        while len(self.messages) > MESSAGES_PER_CHANNEL:
            self.messages.popitem(last=False)

    def payload(self) -> Payload:
        return {
            "id": self.id,
            "type": 0,
            "name": self.name,
            "position": 0,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": next(reversed(self.messages), None) if self.messages else None,
            "rate_limit_per_user": 0,
            "permission_overwrites": [],
        }


@dataclass
class JobRecord:
    """What the bot remembers about a finished job, to serve its buttons."""

    hash: str
    prompt: str
    bot_id: str
    user_id: str
    channel_id: str
    kind: str  #: imagine | variation | upscale | zoom | pan | blend | describe | shorten
    grid: bool
    seed: str
    message_id: str | None = None
    prompts: list[str] = field(default_factory=list)  #: describe/shorten suggestions


@dataclass
class Counters:
    """Everything tests may want to count, kept as plain counters."""

    interactions: int = 0
    by_account: Counter[str] = field(default_factory=Counter)
    by_nonce: Counter[str] = field(default_factory=Counter)
    by_key: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    rest_requests: int = 0
    jobs_started: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    #: jobs started, by the mode they ran in
    jobs_by_mode: Counter[str] = field(default_factory=Counter)
    #: gateway IDENTIFYs accepted, by account user id (a RESUME is not one)
    identifies: Counter[str] = field(default_factory=Counter)

    def count_interaction(self, user_id: str, nonce: str, key: str, type_: int) -> None:
        self.interactions += 1
        self.by_account[user_id] += 1
        if nonce:
            self.by_nonce[nonce] += 1
        self.by_key[key] += 1
        self.by_type[str(type_)] += 1

    def reset(self) -> None:
        fresh = Counters()
        self.__dict__.update(fresh.__dict__)


class SimState:
    """The whole simulated world. One instance per running simulator."""

    def __init__(self, *, settings: SimSettings, seed: int | None = None) -> None:
        self.settings = settings
        self.ids = IdFactory(seed=seed)
        self.accounts: dict[str, Account] = {}  #: by token
        self.accounts_by_user: dict[str, Account] = {}
        self.guilds: dict[str, list[str]] = {}  #: guild id -> channel ids
        self.guild_members: dict[str, set[str]] = {}
        self.channels: dict[str, Channel] = {}
        self.jobs: dict[str, JobRecord] = {}  #: by hash
        self.jobs_by_message: dict[str, JobRecord] = {}
        self.uploads: dict[str, bytes] = {}  #: upload_filename -> bytes (PUT target)
        self.pending_uploads: dict[str, str] = {}  #: upload_id -> upload_filename
        self.files: dict[str, bytes | tuple[str, str]] = {}  #: CDN path -> bytes | (render seed, layout)
        self.face_ids: dict[tuple[str, str], str] = {}  #: (user id, idname) -> CDN url
        self.ephemeral_messages: dict[str, Payload] = {}  #: by id; clicks on /settings need them
        self.counters = Counters()
        self.base_url = "http://127.0.0.1:0"
        self.cdn_links = CdnLinks()

    @property
    def gateway_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/"

    # -- accounts -----------------------------------------------------------------------------

    def add_account(self, spec: AccountSpec) -> Account:
        """Create an account (and its guild, channel and bot DMs) from a possibly partial spec."""
        if spec.token is not None and spec.token in self.accounts:
            raise ValueError(f'account with token "{spec.token[:8]}..." already exists')
        user_id = spec.user_id or self.ids.user_id()
        n = len(self.accounts) + 1
        account = Account(
            token=spec.token or self.ids.token(),
            user_id=user_id,
            username=spec.username or f"simuser{n}",
            guild_id=spec.guild_id or self.ids.entity_id(),
            channel_id=spec.channel_id or self.ids.entity_id(),
            dm_channels={},
        )
        gid = account.guild_id
        self.guilds.setdefault(gid, [])
        self.guild_members.setdefault(gid, set()).add(user_id)
        channel = self.channels.get(account.channel_id)
        if channel is None:
            channel = Channel(id=account.channel_id, guild_id=gid, name=f"mj-{n}", members=set())
            self.channels[channel.id] = channel
            self.guilds[gid].append(channel.id)
        channel.members.add(user_id)
        wanted = spec.dm_channels or {}
        for bot in (MIDJOURNEY, NIJI, INSIGHTFACE):
            dm_id = wanted.get(bot.key) or self.ids.entity_id()
            self.channels[dm_id] = Channel(id=dm_id, guild_id=None, name="", members={user_id}, bot_id=bot.id)
            account.dm_channels[bot.key] = dm_id
        self.accounts[account.token] = account
        self.accounts_by_user[user_id] = account
        log.info("account %s (%s) in guild %s channel %s", user_id, account.username, gid, channel.id)
        return account

    def account_for_token(self, token: str | None) -> Account | None:
        if not token:
            return None
        return self.accounts.get(token.removeprefix("Bot ").strip())

    def find_account(self, ref: str) -> Account | None:
        """Look an account up by token, user id or username (control API convenience)."""
        return (
            self.accounts.get(ref)
            or self.accounts_by_user.get(ref)
            or next((a for a in self.accounts.values() if a.username == ref), None)
        )

    def dm_channel(self, account: Account, bot_id: str) -> Channel:
        key = BOTS[bot_id].key
        return self.channels[account.dm_channels[key]]

    def visible_channel(self, account: Account, channel_id: str) -> Channel | None:
        channel = self.channels.get(channel_id)
        if channel is None:
            return None
        if account.user_id in channel.members:
            return channel
        # Guild channels are visible to every member of the guild.
        members = self.guild_members.get(channel.guild_id or "", set())
        return channel if account.user_id in members else None

    # -- messages and jobs --------------------------------------------------------------------

    def find_message(self, channel_id: str, message_id: str) -> Payload | None:
        channel = self.channels.get(channel_id)
        return None if channel is None else channel.messages.get(message_id)

    def add_job(self, job: JobRecord) -> None:
        self.jobs[job.hash] = job
        if job.message_id is not None:
            self.jobs_by_message[job.message_id] = job

    def jobs_snapshot(self) -> Payload:
        running = sum(a.running for a in self.accounts.values())
        queued = sum(len(a.waiters) for a in self.accounts.values())
        return {
            "running": running,
            "queued": queued,
            "started": self.counters.jobs_started,
            "completed": self.counters.jobs_completed,
            "failed": self.counters.jobs_failed,
            "by_mode": dict(self.counters.jobs_by_mode),
        }
