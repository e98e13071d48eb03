"""Starting and stopping the simulator on a TCP port inside the current event loop."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from aiohttp import web

from mjsim.app import SIM_KEY, Simulator, create_app
from mjsim.state import AccountSpec, SimSettings

__all__ = ["RunningServer", "start_server"]

log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """A started simulator: its URLs, its in-process handle, and how to stop it."""

    runner: web.AppRunner
    sim: Simulator
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: SimSettings | None = None,
    seed: int | None = None,
    accounts: list[AccountSpec] | None = None,
    account_count: int = 0,
) -> RunningServer:
    """Bind (``port=0`` picks a free port) and serve until ``close()``."""
    app = create_app(settings=settings, seed=seed, accounts=accounts, account_count=account_count)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    sim = app[SIM_KEY]
    sim.set_base_url(f"http://{host}:{bound}")
    log.info("mjsim listening on %s", sim.state.base_url)
    return RunningServer(runner=runner, sim=sim, host=host, port=bound)
