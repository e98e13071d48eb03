"""What the image store's copy adds to the SUCCESS hook: event-to-hook latency, store off vs on.

Two fresh stacks of the current tree (`bench.stack.BenchStack`, 10 accounts, one worker), the
second with ``images.backend: local``. Each runs the pipeline bench's paced load (`PACED_TASKS`
imagines at `PACED_RATE`/s, mjsim at real pace, well below capacity) and measures, per task, the
bridge receiving the job's final MESSAGE_CREATE (the event's ``at``) to its SUCCESS hook arriving.
Figures: ``off_`` and ``on_`` p50/p99 in ms and ``added_p50/p99_ms`` (on - off). The copy runs on
the finishing stream, off the event path, so the progress events' latency does not move (the
pipeline bench's ``event_to_hook`` measures that, with the store off as before).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench.pipeline_bench import _event_to_hook
from bench.stack import BenchStack, ProductTree, Shape


class _StoreStack(BenchStack):
    def config(self) -> dict[str, Any]:
        config = super().config()
        # the worker downloads the results from mjsim's CDN, on loopback
        config["url_guard"] = {"allow": [self.sim_url.removeprefix("http://")]}
        config["images"] = {"backend": "local", "dir": str(self.root / "images")}
        return config


async def _paced(store: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"mjb-bench-images-{'on' if store else 'off'}-"))
    kind = _StoreStack if store else BenchStack
    stack = kind(root, product=ProductTree.current(), shape=Shape())
    try:
        await stack.start()  # inside: a stack that fails to start still stops what it started
        return await _event_to_hook(stack)
    finally:
        await stack.close()


async def _both() -> dict[str, Any]:
    off = await _paced(False)
    on = await _paced(True)
    figures: dict[str, Any] = {}
    for side, found in (("off", off), ("on", on)):
        figures[f"{side}_success_event_to_hook_p50_ms"] = found["event_to_hook_p50_ms"]
        figures[f"{side}_success_event_to_hook_p99_ms"] = found["event_to_hook_p99_ms"]
        figures[f"{side}_samples"] = found["event_to_hook_samples"]
    figures["added_p50_ms"] = on["event_to_hook_p50_ms"] - off["event_to_hook_p50_ms"]
    figures["added_p99_ms"] = on["event_to_hook_p99_ms"] - off["event_to_hook_p99_ms"]
    return figures


def run() -> dict[str, Any]:
    return uvloop.run(_both())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
