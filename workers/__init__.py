"""Background workers: turn gateway events into task changes and drive tasks through Discord."""

from __future__ import annotations

__all__: list[str] = []
