"""The HTTP face: a litestar app speaking midjourney-proxy's API (`create_app`)."""

from __future__ import annotations

from broker.api.app import create_app

__all__ = ["create_app"]
