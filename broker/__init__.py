"""mjbroker's core: settings, the task model, the store and admission, and the HTTP API."""

from __future__ import annotations

__all__: list[str] = []
