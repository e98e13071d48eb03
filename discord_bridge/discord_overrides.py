"""Point discord.py-self at another Discord (e.g. mjsim) and stop its startup internet probing.

Only class attributes that discord.py-self 2.1.0 reads at request time are changed; no library
source is edited. Call both functions once, before creating any ``discord.Client``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from typing import Any

import discord.asset
import discord.gateway
import discord.http
import discord.utils
import yarl

__all__ = ["install_fixed_super_properties", "point_client_at"]

log = logging.getLogger(__name__)


def point_client_at(rest_base: str, gateway_url: str, cdn_base: str | None = None) -> None:
    """Use ``rest_base`` (e.g. ``http://127.0.0.1:8081/api/v9``) for REST, ``gateway_url`` for the websocket.

    :param rest_base: REST base including the API version path
    :param gateway_url: websocket URL dialled on IDENTIFY (RESUME uses READY's ``resume_gateway_url``)
    :param cdn_base: origin used for ``Asset`` URLs; unchanged when None
    """
    discord.http.Route.BASE = rest_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    if cdn_base is not None:
        discord.asset.Asset.BASE = cdn_base.rstrip("/")
    log.info("discord.py-self REST %s, gateway %s", rest_base, gateway_url)


def install_fixed_super_properties(user_agent: str, build_number: int = 9999) -> None:
    """Replace ``discord.utils.Headers.default`` so no client fetches build numbers from the internet.

    :param user_agent: browser User-Agent sent on REST and in IDENTIFY (its ``Chrome/<major>`` is used)
    :param build_number: ``client_build_number`` reported in the super properties
    """
    match = re.search(r"Chrome/(\d+)", user_agent)
    major = int(match.group(1)) if match else 136
    headers_cls = discord.utils.Headers

    async def _fixed(cls: Any, session: Any, proxy: Any = None, proxy_auth: Any = None) -> Any:
        props: dict[str, Any] = {
            "os": "Windows",
            "browser": "Chrome",
            "device": "",
            "system_locale": "en-US",
            "browser_user_agent": user_agent,
            "browser_version": f"{major}.0.0.0",
            "os_version": "10",
            "referrer": "",
            "referring_domain": "",
            "referrer_current": "",
            "referring_domain_current": "",
            "release_channel": "stable",
            "client_build_number": build_number,
            "client_event_source": None,
            "has_client_mods": False,
            "client_launch_id": str(uuid.uuid4()),
            "client_app_state": "unfocused",
            "client_heartbeat_session_id": str(uuid.uuid4()),
        }
        encoded = base64.b64encode(json.dumps(props, separators=(",", ":")).encode()).decode()
        return cls(
            platform="Windows",
            major_version=major,
            super_properties=props,
            encoded_super_properties=encoded,
            extra_gateway_properties={"is_fast_connect": False, "gateway_connect_reasons": "AppSkeleton"},
        )

    # setattr: mypy rightly objects to assigning a method; replacing it is the point here.
    setattr(headers_cls, "default", classmethod(_fixed))  # noqa: B010
