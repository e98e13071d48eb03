"""Fixtures of the API tests: the web process (a real granian subprocess) and a client of it."""

from __future__ import annotations

from api_support import client, web

__all__ = ["client", "web"]
