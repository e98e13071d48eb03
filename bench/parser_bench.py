"""Parser throughput over the recorded fixtures: ``python bench/parser_bench.py [seconds]``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec

from workers.parse import parse_line
from workers.parser import parse_event

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mj-events.jsonl"
T = TypeVar("T")


def _rate(fn: Callable[[T], object], items: Sequence[T], seconds: float) -> float:
    """Calls per second of `fn` over `items`, round-robin, for about `seconds`."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for item in items:
            fn(item)
        done += len(items)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def run(seconds: float = 3.0) -> dict[str, float]:
    """Events/s of `parse_event` on decoded payloads and on raw bytes, and of the CLI line function.

    Each gets a third of `seconds`. The bytes figure is the workers' path (the bridge forwards ``d``
    raw; its decode is included); the CLI figure includes decoding the line and encoding the answer.
    """
    cases = [json.loads(line) for line in FIXTURES.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = [(str(c["t"]), c["d"]) for c in cases]
    raw = [(t, msgspec.json.encode(d)) for t, d in events]
    lines = [msgspec.json.encode({"t": c["t"], "d": c["d"]}) for c in cases]
    return {
        "fixtures": float(len(cases)),
        "parse_event_per_s": _rate(lambda e: parse_event(*e), events, seconds / 3),
        "parse_event_bytes_per_s": _rate(lambda e: parse_event(*e), raw, seconds / 3),
        "cli_line_per_s": _rate(parse_line, lines, seconds / 3),
    }


if __name__ == "__main__":
    result = run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
    for key, value in result.items():
        print(f"{key}: {value:,.0f}")
