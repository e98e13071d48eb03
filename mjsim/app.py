"""Application factory: one aiohttp app serving REST, gateway, CDN and the control API."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from mjsim.bots import InsightFaceBot, MidjourneyBot
from mjsim.bots.base import BotRuntime
from mjsim.cdn import content_type, file_body
from mjsim.cdn_links import EXPIRED_TEXT, add_link_routes
from mjsim.control import ControlApi
from mjsim.faults import FaultBook
from mjsim.gateway import GatewayHub
from mjsim.rest import API_PREFIXES, RestApi
from mjsim.state import AccountSpec, SimSettings, SimState

__all__ = ["SIM_KEY", "Simulator", "create_app"]

log = logging.getLogger(__name__)


@dataclass
class Simulator:
    """Handles to every part of a running simulator (for in-process tests)."""

    state: SimState
    hub: GatewayHub
    runtime: BotRuntime
    mj: MidjourneyBot

    def set_base_url(self, base_url: str) -> None:
        """Tell the simulator its own public origin (used in URLs it hands out)."""
        self.state.base_url = base_url.rstrip("/")


SIM_KEY = web.AppKey("mjsim", Simulator)


async def _serve_cdn(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    path = request.path
    entry = sim.state.files.get(path)
    # Discord's CDN lets any origin read its files (front ends draw them into a canvas)
    cors = {"Access-Control-Allow-Origin": "*"}
    if entry is None:
        return web.Response(status=404, text="Not Found", headers=cors)
    settings = sim.state.settings
    if not sim.state.cdn_links.valid(path, request.query, require=settings.cdn_require_signature):
        return web.Response(status=404, text=EXPIRED_TEXT, headers=cors)
    return web.Response(
        body=file_body(entry, path),
        headers={"Content-Type": content_type(path), "Cache-Control": "public, max-age=86400", **cors},
    )


def create_app(
    *,
    settings: SimSettings | None = None,
    seed: int | None = None,
    accounts: list[AccountSpec] | None = None,
    account_count: int = 0,
) -> web.Application:
    """Build the simulator app. ``app[SIM_KEY]`` exposes its state for in-process tests.

    :param settings: timing and behaviour knobs (mutable later via /_sim/settings)
    :param seed: makes generated tokens, ids and job hashes repeatable
    :param accounts: accounts to create with given tokens/ids
    :param account_count: additional accounts to generate
    """
    state = SimState(settings=settings or SimSettings(), seed=seed)
    for spec in accounts or []:
        state.add_account(spec)
    for _ in range(account_count):
        state.add_account(AccountSpec())
    hub = GatewayHub(state)
    runtime = BotRuntime(state, hub, FaultBook())
    mj = MidjourneyBot(runtime)
    rest = RestApi(runtime, mj, InsightFaceBot(runtime))
    app = web.Application(middlewares=[rest.middleware], client_max_size=64 * 1024 * 1024)
    app[SIM_KEY] = Simulator(state=state, hub=hub, runtime=runtime, mj=mj)
    app.router.add_get("/", hub.handle)
    app.router.add_get("/gateway", hub.handle)
    rest.add_routes(app)
    ControlApi(runtime).add_routes(app)
    app.router.add_get("/attachments/{path:.+}", _serve_cdn)
    app.router.add_get("/ephemeral-attachments/{path:.+}", _serve_cdn)
    add_link_routes(app, state, API_PREFIXES)

    async def _shutdown(app: web.Application) -> None:
        await runtime.cancel_all()
        await hub.close_all()

    app.on_shutdown.append(_shutdown)
    return app
