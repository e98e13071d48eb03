"""Simulated bots: Midjourney/Niji (one implementation) and InsightFace."""

from __future__ import annotations

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.insightface import InsightFaceBot
from mjsim.bots.midjourney import MidjourneyBot

__all__ = ["BotRuntime", "InsightFaceBot", "InteractionCtx", "MidjourneyBot"]
