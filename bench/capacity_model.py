"""The capacity model: per-task costs measured by `bench.capacity_bench`, turned into rates and sizes.

Pure arithmetic, no I/O. Inputs are what one task (submit to SUCCESS hook) costs each process in
CPU seconds, and what the processes cost when no task runs (per second: heartbeats, lease renewals,
gateway heartbeats, metrics snapshots). A resource's capacity is what one core of it sustains,
1 / (CPU seconds per task); a deployment needs enough of each for its accounts' pace, at a target
utilisation that leaves room for bursts and restarts.

Why Midjourney's pace and not ours: an account can only run its plan's concurrent jobs, and each
takes Midjourney about a minute of GPU time (docs.midjourney.com, "Fast, Relax & Turbo Modes": "The
Average Job ... takes about one minute of GPU time"; Basic and Standard plans run 3 jobs at once,
Pro and Mega 12 fast ones, as README "Going live" says for `core_size`). So an account finishes at
most ``slots / job_seconds`` tasks per second, whatever the broker could do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

__all__ = ["PROCESSES", "Costs", "Pace", "machine_prediction", "needs", "per_core"]

#: the product's processes (mjsim and the bench's load generator stand in for Discord and clients)
PROCESSES = ("redis", "web", "worker", "bridge")


class Pace(msgspec.Struct, frozen=True, kw_only=True):
    """How fast one account can go on the real Midjourney (the model's assumption)."""

    #: concurrent jobs of the plan (`core_size`): 3 on Basic/Standard, 12 fast on Pro/Mega
    slots: int = 3
    #: wall time of one fast job, submit to final grid (about a minute of GPU time; 45 s seen)
    job_seconds: float = 45.0

    @property
    def tasks_per_s(self) -> float:
        return self.slots / self.job_seconds


class Costs(msgspec.Struct, frozen=True, kw_only=True):
    """What the stack spent: per task (background removed) and per second of idling."""

    #: CPU seconds per task, by process (redis, web, worker, bridge, mjsim, bench)
    cpu_per_task: dict[str, float]
    #: CPU seconds per second with no task running, by process
    idle_cpu_per_s: dict[str, float]
    #: accounts the bridge held while idling (its idle cost grows with them: gateway heartbeats)
    accounts: int


def per_core(costs: Costs) -> dict[str, float]:
    """Tasks per second one core of each product process sustains (Redis: one shard's main thread)."""
    return {p: 1.0 / costs.cpu_per_task[p] for p in PROCESSES if costs.cpu_per_task.get(p, 0) > 0}


def needs(costs: Costs, accounts: int, *, pace: Pace = Pace(), utilisation: float = 0.5) -> dict[str, float]:
    """Cores (Redis: shards) of each product process that `accounts` accounts need at `pace`, each
    kept at `utilisation`; and the task rate itself under ``tasks_per_s``.

    The idle cost scales with the accounts for the bridge (one gateway session each) and stays per
    process for the rest (each process's heartbeat and snapshots, counted once).
    """
    rate = accounts * pace.tasks_per_s
    out: dict[str, float] = {"tasks_per_s": rate}
    for process in PROCESSES:
        idle = costs.idle_cpu_per_s.get(process, 0.0)
        if process == "bridge":
            idle = idle * accounts / max(costs.accounts, 1)
        busy = rate * costs.cpu_per_task.get(process, 0.0) + idle
        out[process] = max(1, math.ceil(busy / utilisation))
    return out


def machine_prediction(cpu_per_task: Mapping[str, float], *, cores: float, workers: int) -> tuple[float, str]:
    """Tasks per second this machine should reach with every process on its `cores`, and the bound
    that sets it: all processes together (``cores``), or one single-threaded process at one core
    (Redis, the bridge, a granian worker of the web, or the `workers` worker processes together)."""
    bounds = {"cores": cores / sum(cpu_per_task.values())}
    for process in ("redis", "web", "bridge", "mjsim"):
        if cpu_per_task.get(process, 0) > 0:
            bounds[process] = 1.0 / cpu_per_task[process]
    if cpu_per_task.get("worker", 0) > 0:
        bounds["worker"] = min(workers, cores) / cpu_per_task["worker"]
    bound = min(bounds, key=lambda name: bounds[name])
    return bounds[bound], bound
