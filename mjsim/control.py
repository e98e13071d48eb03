"""The /_sim control API: accounts, settings, faults and counters (JSON in, JSON out).

Routes (all JSON; ``{ref}`` = token, user id or username):

* ``GET  /_sim/health`` -> ``{"ok": true}``
* ``GET  /_sim/accounts`` -> ``[AccountSummary]``
* ``POST /_sim/accounts`` ``{"count": n}`` or ``{"accounts": [AccountSpec]}`` -> ``[AccountSummary]``
* ``GET  /_sim/accounts/{ref}`` -> ``AccountSummary + {"settings": {...}, "interactions": n}``
* ``PATCH /_sim/accounts/{ref}`` ``{"mode","remix","stealth","high_variation","concurrency","queue_limit",
  "banned","captcha","subscription","fast_exhausted"}`` (any subset) -> account settings;
  ``fast_exhausted`` runs the account out of fast hours (FAST/TURBO jobs get "Credits exhausted")
* ``GET/PATCH /_sim/settings`` ``{"job_seconds","progress_steps","speed","ack_delay","heartbeat_interval",
  "banned_words","resume_window","relax_factor","turbo_factor"}``
* ``POST /_sim/faults`` ``{"account": ref, "kind": K, ...}`` with K one of
  ``fail_next_job`` (``error``, ``count``), ``ban``, ``unban``, ``captcha`` (``on``), ``drop`` (``code``),
  ``reconnect`` (op 7), ``invalid_session`` (``resumable``), ``heartbeat_request`` (op 1),
  ``rate_limit`` (``count``, ``retry_after``, ``global``; account may be ``"*"``),
  ``delay_events`` (``seconds``), ``reorder_events`` (``count``), ``delete_mid_job`` (``count``), ``clear``
  -> ``{"ok": true, ...}``
* ``GET  /_sim/counters`` -> see ``counters_payload``; ``POST /_sim/counters/reset``
* ``GET  /_sim/messages/{channel_id}`` -> stored messages, oldest first
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from mjsim import responses
from mjsim.bots.base import BotRuntime
from mjsim.faults import ANY, FaultBook
from mjsim.state import Account, AccountSpec, Mode, SimSettings, SimState

__all__ = ["ControlApi", "counters_payload"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

_ACCOUNT_FIELDS = {
    "mode": str,
    "remix": bool,
    "stealth": bool,
    "high_variation": bool,
    "concurrency": int,
    "queue_limit": int,
    "banned": bool,
    "captcha": bool,
    "subscription": str,
    "fast_exhausted": bool,
}


def counters_payload(state: SimState) -> Payload:
    """Counter snapshot: interactions (total, by account user id, by nonce, by request key, by type),
    gateway events sent (total and by dispatch name), IDENTIFYs by account, REST requests, and jobs."""
    c = state.counters
    return {
        "interactions": {
            "total": c.interactions,
            "by_account": dict(c.by_account),
            "by_nonce": dict(c.by_nonce),
            "by_key": dict(c.by_key),
            "by_type": dict(c.by_type),
            "duplicate_keys": {k: n for k, n in c.by_key.items() if n > 1},
        },
        "events": {"sent": c.events_sent, "by_type": dict(c.events_by_type)},
        "gateway": {"identifies": dict(c.identifies)},
        "rest_requests": c.rest_requests,
        "jobs": state.jobs_snapshot(),
    }


class ControlApi:
    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt
        self.state = rt.state

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/_sim/health", self.health)
        r.add_get("/_sim/accounts", self.list_accounts)
        r.add_post("/_sim/accounts", self.create_accounts)
        r.add_get("/_sim/accounts/{ref}", self.get_account)
        r.add_patch("/_sim/accounts/{ref}", self.patch_account)
        r.add_get("/_sim/settings", self.get_settings)
        r.add_patch("/_sim/settings", self.patch_settings)
        r.add_post("/_sim/faults", self.fault)
        r.add_get("/_sim/counters", self.counters)
        r.add_post("/_sim/counters/reset", self.reset_counters)
        r.add_get("/_sim/messages/{cid}", self.messages)

    def _summary(self, a: Account) -> Payload:
        return a.summary(self.state.base_url, self.state.gateway_url)

    async def _body(self, request: web.Request) -> Payload:
        raw = await request.read()
        return msgspec.json.decode(raw) if raw else {}

    async def health(self, request: web.Request) -> web.Response:
        return responses.json({"ok": True, "accounts": len(self.state.accounts)})

    async def list_accounts(self, request: web.Request) -> web.Response:
        return responses.json([self._summary(a) for a in self.state.accounts.values()])

    async def create_accounts(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        specs = [msgspec.convert(s, AccountSpec) for s in body.get("accounts", [])]
        specs += [AccountSpec() for _ in range(int(body.get("count", 0)))]
        try:
            made = [self.state.add_account(s) for s in specs]
        except ValueError as exc:
            return responses.json({"error": str(exc)}, status=409)
        return responses.json([self._summary(a) for a in made])

    def _find(self, request: web.Request) -> Account | None:
        return self.state.find_account(request.match_info["ref"])

    async def get_account(self, request: web.Request) -> web.Response:
        a = self._find(request)
        if a is None:
            return responses.json({"error": "unknown account"}, status=404)
        return responses.json(
            {
                **self._summary(a),
                "settings": a.settings_payload(),
                "interactions": self.state.counters.by_account[a.user_id],
            }
        )

    async def patch_account(self, request: web.Request) -> web.Response:
        a = self._find(request)
        if a is None:
            return responses.json({"error": "unknown account"}, status=404)
        body = await self._body(request)
        for key, kind in _ACCOUNT_FIELDS.items():
            if key in body:
                value = kind(body[key])
                setattr(a, key, Mode(value) if key == "mode" else value)
        if body.get("banned"):
            await self.rt.hub.kill_user(a.user_id)
        return responses.json(a.settings_payload())

    async def get_settings(self, request: web.Request) -> web.Response:
        return responses.json(msgspec.to_builtins(self.state.settings))

    async def patch_settings(self, request: web.Request) -> web.Response:
        merged = {**msgspec.to_builtins(self.state.settings), **(await self._body(request))}
        try:
            new = msgspec.convert(merged, SimSettings)
        except msgspec.ValidationError as exc:
            return responses.json({"error": str(exc)}, status=400)
        for f in new.__struct_fields__:
            setattr(self.state.settings, f, getattr(new, f))
        return responses.json(msgspec.to_builtins(self.state.settings))

    async def fault(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        kind = str(body.get("kind"))
        ref = str(body.get("account", ""))
        faults, hub = self.rt.faults, self.rt.hub
        if kind == "rate_limit" and ref == ANY:
            _rate_limit(faults, ANY, body)
            return responses.json({"ok": True})
        if kind == "clear" and not ref:
            faults.clear()
            hub.clear_faults()
            return responses.json({"ok": True})
        a = self.state.find_account(ref)
        if a is None:
            return responses.json({"error": f'unknown account "{ref}"'}, status=404)
        uid = a.user_id
        result: Payload = {"ok": True}
        if kind == "fail_next_job":
            try:
                faults.fail_next_jobs(uid, str(body.get("error")), int(body.get("count", 1)))
            except ValueError as exc:
                return responses.json({"error": str(exc)}, status=400)
        elif kind == "ban":
            a.banned = True
            await hub.kill_user(uid)
        elif kind == "unban":
            a.banned = False
        elif kind == "captcha":
            a.captcha = bool(body.get("on", True))
        elif kind == "drop":
            code = body.get("code")
            result["connections"] = await hub.drop(uid, code=int(code) if code is not None else None)
        elif kind == "reconnect":
            result["connections"] = hub.send_op(uid, 7)
        elif kind == "invalid_session":
            result["connections"] = hub.send_op(uid, 9, bool(body.get("resumable", False)))
        elif kind == "heartbeat_request":
            result["connections"] = hub.send_op(uid, 1)
        elif kind == "rate_limit":
            _rate_limit(faults, uid, body)
        elif kind == "delay_events":
            seconds = float(body.get("seconds", 0))
            if seconds > 0:
                hub.delays[uid] = seconds
            else:
                hub.delays.pop(uid, None)
        elif kind == "reorder_events":
            hub.reorder[uid] = int(body.get("count", 1))
        elif kind == "delete_mid_job":
            faults.delete_mid_job[uid] = int(body.get("count", 1))
        elif kind == "clear":
            faults.clear(uid)
            hub.clear_faults(uid)
            a.captcha = False
        else:
            return responses.json({"error": f'unknown fault kind "{kind}"'}, status=400)
        return responses.json(result)

    async def counters(self, request: web.Request) -> web.Response:
        return responses.json(counters_payload(self.state))

    async def reset_counters(self, request: web.Request) -> web.Response:
        self.state.counters.reset()
        return responses.json({"ok": True})

    async def messages(self, request: web.Request) -> web.Response:
        channel = self.state.channels.get(request.match_info["cid"])
        if channel is None:
            return responses.json({"error": "unknown channel"}, status=404)
        return responses.json(list(channel.messages.values()))


def _rate_limit(faults: FaultBook, key: str, body: Payload) -> None:
    """The next ``count`` REST requests of ``key`` get 429 with ``retry_after`` (``global`` scope or not)."""
    faults.rate_limit(
        key, int(body.get("count", 1)), float(body.get("retry_after", 0.1)), bool(body.get("global"))
    )
