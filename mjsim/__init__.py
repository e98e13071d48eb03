"""mjsim: a local fake Discord (REST, gateway, CDN) with simulated Midjourney, Niji and InsightFace bots."""

from __future__ import annotations

from mjsim.app import SIM_KEY, Simulator, create_app
from mjsim.apps import BOTS, INSIGHTFACE, MIDJOURNEY, NIJI
from mjsim.server import RunningServer, start_server
from mjsim.state import AccountSpec, Mode, SimSettings

__all__ = [
    "BOTS",
    "INSIGHTFACE",
    "MIDJOURNEY",
    "NIJI",
    "SIM_KEY",
    "AccountSpec",
    "Mode",
    "RunningServer",
    "SimSettings",
    "Simulator",
    "create_app",
    "start_server",
]
