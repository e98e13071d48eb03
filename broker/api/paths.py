"""Route paths with midjourney-proxy's speed-mode aliases (`/mj-fast/mj/...` etc.)."""

from __future__ import annotations

from broker.models import SpeedMode

__all__ = ["route_paths", "speed_mode"]

_PREFIXES = {"/mj-fast": SpeedMode.FAST, "/mj-relax": SpeedMode.RELAX, "/mj-turbo": SpeedMode.TURBO}


def route_paths(path: str) -> list[str]:
    """`path` and its three aliases; the alias selects the speed mode of the task."""
    return [path, *(prefix + path for prefix in _PREFIXES)]


def speed_mode(path: str) -> SpeedMode | None:
    """The mode a request path asks for through its prefix, if any."""
    if path.startswith("/mj-"):
        for prefix, mode in _PREFIXES.items():
            if path.startswith(prefix + "/"):
                return mode
    return None
