"""Discord REST for one account: `/interactions`, attachment uploads, reactions, the inpaint host.

Error tree (what a caller can do about it):

- `DiscordError`
  - `Rejected`: Discord answered 4xx (not 429): it did not run the request; fail the task with it.
    - `RateLimited`: Discord answered 429: it did not run the request; send it again after
      `retry_after` seconds (the caller decides whether to wait, see `discord_bridge.consumer`).
  - `Ambiguous`: a timeout, a dropped connection or a 5xx: the request may have run; never resend.

`/interactions` is posted on a curl_cffi session of our own, with the TLS fingerprint the library
uses (curl_cffi's default Chrome) and the library's headers, but without the library's retry loop,
which resends on 5xx and timeouts: a resent interaction is a second paid GPU job. A 429 is
different: Discord did not process the request. The first interaction of a task hands the 429 to
its caller (`wait=False`): the consumer keeps the task's place and sends it once the limit is over,
so the wait never counts against the task's timeout. A later step of a flow already under way (a
modal answer, InsightFace's second command) waits `retry_after` in full, within
`rate_limit_budget` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from typing import Any

import aiohttp
import discord
import discord.http
import msgspec
from curl_cffi import requests as curl_requests
from curl_cffi.requests.exceptions import RequestException as CurlError

from broker.config import Account, DiscordSettings
from broker.metrics import Metrics
from discord_bridge.payloads import CommandBook, new_nonce
from discord_bridge.session import Session

__all__ = ["Ambiguous", "DiscordError", "RateLimited", "Rejected", "RestClient", "Uploaded"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

_json = msgspec.json.Encoder()


class DiscordError(Exception):
    """A REST call to Discord did not succeed; `reason` is fit for a task's failReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(DiscordError):
    """Discord refused the request (4xx): it was not processed."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(f"[Discord {status}] {message}")
        self.status = status
        self.code = code


class RateLimited(Rejected):
    """Discord answered 429: the request was not processed; it may be sent after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(429, f"rate limited by Discord for {retry_after:.0f} s")
        self.retry_after = retry_after


class Ambiguous(DiscordError):
    """No clear answer (timeout, connection lost, 5xx): the request may or may not have run."""


class Uploaded(msgspec.Struct, frozen=True):
    """A file placed in Discord's upload bucket, usable as an interaction attachment."""

    filename: str
    uploaded_filename: str


def _error_message(body: Any, fallback: str) -> tuple[str, int | None]:
    if isinstance(body, dict):
        message = str(body.get("message") or fallback)
        code = body.get("code")
        return message, int(code) if isinstance(code, int) else None
    return (str(body)[:200] or fallback), None


class RestClient:
    """REST calls of one account, through its session's discord.py-self client.

    :param session: the account's gateway session (its client carries token, headers, curl session).
    :param settings: base URLs (the inpaint host for Vary Region).
    :param http: a shared aiohttp session for non-Discord hosts (upload bucket, inpaint host, links).
    :param request_timeout: seconds before an `/interactions` POST counts as ambiguous.
    :param rate_limit_budget: total seconds a request may spend waiting out 429s.
    :param metrics: counts the interactions sent and failed (by account; default: not exported).
    """

    def __init__(
        self,
        session: Session,
        *,
        settings: DiscordSettings,
        http: aiohttp.ClientSession,
        request_timeout: float = 15.0,
        rate_limit_budget: float = 120.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.session = session
        self.account: Account = session.account
        self.settings = settings
        self.http = http
        self.request_timeout = request_timeout
        self.rate_limit_budget = rate_limit_budget
        self.commands = CommandBook()
        self.rate_limited = 0
        self._curl: curl_requests.AsyncSession[curl_requests.Response] | None = None
        metrics = metrics or Metrics(process_collector=False)
        self._sent = metrics.interactions_sent.labels(self.account.id)
        self._failed = metrics.interactions_failed

    async def close(self) -> None:
        if self._curl is not None:
            await self._curl.close()
            self._curl = None

    @property
    def _client(self) -> discord.Client:
        client = self.session.client
        if client is None:
            raise Ambiguous("the account's Discord session is not connected")
        return client

    # -- /interactions -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        http = self._client.http
        props = http.headers
        headers: dict[str, str] = {
            **props.client_hints,
            "Accept": "*/*",
            "Accept-Language": "en-US,en;q=0.9",
            "Origin": "https://discord.com",
            "Referer": "https://discord.com/channels/@me",
            "Sec-Fetch-Dest": "empty",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "same-origin",
            "User-Agent": props.user_agent,
            "X-Discord-Locale": "en-US",
            "X-Super-Properties": props.encoded_super_properties,
            "Authorization": str(http.token),
            "Content-Type": "application/json",
        }
        return headers

    async def post_interaction(self, payload: Payload, *, wait: bool = True) -> None:
        """POST one interaction: returns on 2xx, raises `Rejected` or `Ambiguous`.

        :param wait: wait out 429s (each `retry_after` in full, `rate_limit_budget` seconds in all);
            False raises `RateLimited` on the first 429 instead.
        """
        try:
            await self._post_interaction(payload, wait=wait)
        except RateLimited:
            self._failed.labels(self.account.id, "rate_limited").inc()
            raise
        except Rejected as exc:
            reason = "rate_limited" if exc.status == 429 else "rejected"
            self._failed.labels(self.account.id, reason).inc()
            raise
        except Ambiguous:
            self._failed.labels(self.account.id, "no_answer").inc()
            raise
        self._sent.inc()

    async def _post_interaction(self, payload: Payload, *, wait: bool) -> None:
        if not self.session.ready.is_set():
            raise Ambiguous("the account's Discord session is not connected")
        headers = self._headers()
        if self._curl is None:
            # As the library does: Chrome's TLS fingerprint, and only the headers we set.
            self._curl = curl_requests.AsyncSession(impersonate="chrome", default_headers=False)
        curl = self._curl
        url = f"{discord.http.Route.BASE}/interactions"
        body = _json.encode(payload)
        started = time.monotonic()
        while True:
            try:
                response = await curl.request(
                    "POST", url, data=body, headers=headers, timeout=self.request_timeout
                )
            except CurlError as exc:
                # A timeout or a cut connection: Discord may have run it. Never resend.
                raise Ambiguous(f"no answer from Discord for the interaction ({type(exc).__name__})") from exc
            status = int(response.status_code)
            if 200 <= status < 300:
                return
            parsed = _parse_body(response)
            if status == 429:
                retry_after = _retry_after(parsed, response.headers)
                self.rate_limited += 1
                if not wait:
                    raise RateLimited(retry_after)
                if time.monotonic() - started + retry_after > self.rate_limit_budget:
                    # Not `RateLimited`: a later step of a flow under way; its first step ran.
                    raise Rejected(429, f"rate limited by Discord for {retry_after:.0f} s")
                log.warning(
                    "account %s: 429 on /interactions, retrying in %.2fs", self.account.id, retry_after
                )
                await asyncio.sleep(retry_after)
                continue
            message, code = _error_message(parsed, response.reason or "error")
            if status >= 500:
                raise Ambiguous(f"[Discord {status}] {message} (not resent: it may have run)")
            raise Rejected(status, message, code)

    # -- library REST (idempotent enough for its retries) --------------------------------------

    async def _request(self, route: discord.http.Route, **kwargs: Any) -> Any:
        try:
            return await self._client.http.request(route, **kwargs)
        except discord.HTTPException as exc:
            raise Rejected(exc.status, exc.text or str(exc), exc.code or None) from exc
        except (CurlError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            raise Ambiguous(f"Discord REST failed: {type(exc).__name__}") from exc

    async def load_commands(self) -> int:
        """Read the guild's application-command-index into `commands`; 0 when it cannot be read."""
        route = discord.http.Route(
            "GET", "/guilds/{guild_id}/application-command-index", guild_id=self.account.guild_id
        )
        try:
            index = await self._request(route)
        except DiscordError as exc:
            log.warning("account %s: command index unavailable (%s); using known ids", self.account.id, exc)
            return 0
        return self.commands.load_index(index)

    async def upload(
        self, files: list[tuple[str, bytes]], *, channel_id: str | None = None
    ) -> list[Uploaded]:
        """Put files in Discord's upload bucket (POST attachments, then PUT each to its upload_url)."""
        if not files:
            return []
        channel = channel_id or self.account.channel_id
        route = discord.http.Route("POST", "/channels/{channel_id}/attachments", channel_id=channel)
        body = {
            "files": [
                {"id": str(i), "filename": name, "file_size": len(data)}
                for i, (name, data) in enumerate(files)
            ]
        }
        slots = await self._request(route, json=body)
        uploaded: list[Uploaded] = []
        by_id = {str(slot.get("id")): slot for slot in (slots or {}).get("attachments", [])}
        for i, (name, data) in enumerate(files):
            slot = by_id.get(str(i))
            if slot is None:
                raise Rejected(400, f"Discord gave no upload slot for {name}")
            try:
                async with self.http.put(
                    slot["upload_url"], data=data, headers={"Content-Type": ""}
                ) as response:
                    if response.status >= 300:
                        raise Rejected(response.status, f"upload of {name} failed")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Ambiguous(f"upload of {name} failed: {type(exc).__name__}") from exc
            uploaded.append(Uploaded(filename=name, uploaded_filename=str(slot["upload_filename"])))
        return uploaded

    async def upload_to_cdn(self, files: list[tuple[str, bytes]]) -> list[str]:
        """Upload files and post them in the account's channel; returns their CDN URLs, in order."""
        if not files:
            return []
        uploaded = await self.upload(files)
        route = discord.http.Route(
            "POST", "/channels/{channel_id}/messages", channel_id=self.account.channel_id
        )
        body = {
            "content": "",
            "nonce": new_nonce(),
            "channel_id": self.account.channel_id,
            "type": 0,
            "sticker_ids": [],
            "attachments": [
                {"id": str(i), "filename": u.filename, "uploaded_filename": u.uploaded_filename}
                for i, u in enumerate(uploaded)
            ],
        }
        message = await self._request(route, json=body)
        attachments = (message or {}).get("attachments") or []
        urls = [str(a.get("url")) for a in attachments if a.get("url")]
        if len(urls) != len(files):
            raise Rejected(400, f"Discord returned {len(urls)} attachment URLs for {len(files)} files")
        return urls

    async def refresh_urls(self, urls: list[str]) -> list[str]:
        """Fresh links for expired CDN links, in order (what the official client asks when a link
        it shows has expired)."""
        route = discord.http.Route("POST", "/attachments/refresh-urls")
        answer = await self._request(route, json={"attachment_urls": urls})
        fresh = {
            str(item.get("original")): str(item.get("refreshed"))
            for item in (answer or {}).get("refreshed_urls") or []
            if isinstance(item, dict) and item.get("refreshed")
        }
        missing = [url for url in urls if url not in fresh]
        if missing:
            raise Rejected(400, f"Discord refreshed {len(urls) - len(missing)} of {len(urls)} links")
        return [fresh[url] for url in urls]

    async def recent_messages(self, channel_id: str, *, limit: int = 50) -> list[Payload]:
        """The channel's latest messages, oldest first (catch-up after a session change)."""
        route = discord.http.Route("GET", "/channels/{channel_id}/messages", channel_id=channel_id)
        found = await self._request(route, params={"limit": limit})
        messages = [m for m in found or [] if isinstance(m, dict)]
        return list(reversed(messages))

    async def put_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        route = discord.http.Route(
            "PUT",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            channel_id=channel_id,
            message_id=message_id,
            emoji=emoji,
        )
        await self._request(route, params={"location": "Message", "type": 0})

    async def open_dm(self, recipient_id: str) -> str:
        """The DM channel with a bot (created when missing)."""
        route = discord.http.Route("POST", "/users/@me/channels")
        channel = await self._request(route, json={"recipients": [recipient_id]})
        return str(channel["id"])

    # -- other hosts ---------------------------------------------------------------------------

    async def submit_inpaint(self, *, token: str, mask: bytes, prompt: str) -> None:
        """POST a Vary (Region) job to the Midjourney activity host."""
        url = f"{self.settings.inpaint_url.rstrip('/')}/inpaint/api/submit-job"
        body = {
            "customId": token,
            "mask": base64.b64encode(mask).decode(),
            "prompt": prompt,
            "userId": "0",
            "username": "0",
        }
        try:
            async with self.http.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=self.request_timeout)
            ) as response:
                if response.status >= 500:
                    raise Ambiguous(f"[inpaint {response.status}] the editor host failed (not resent)")
                if response.status >= 300:
                    text = (await response.text())[:200]
                    raise Rejected(response.status, f"the editor host refused the mask: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Ambiguous(f"no answer from the editor host ({type(exc).__name__})") from exc


def _parse_body(response: Any) -> Any:
    try:
        content = response.content
        if not content:
            return None
        return msgspec.json.decode(content)
    except Exception:
        try:
            return str(response.text)[:300]
        except Exception:
            return None


def _retry_after(body: Any, headers: Any) -> float:
    value: Any = None
    if isinstance(body, dict):
        value = body.get("retry_after")
    if value is None:
        try:
            value = headers.get("Retry-After")
        except Exception:
            value = None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 1.0
    # In full: sending earlier only earns another 429.
    return max(0.0, seconds) if math.isfinite(seconds) else 1.0
