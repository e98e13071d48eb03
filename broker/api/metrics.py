"""`GET /metrics`: every process's metrics in Prometheus text format, from one scrape target.

The answer joins three sources (see `broker.metrics` for why through Redis):

- this web process's own registry, read live;
- the snapshots the other processes (web workers, workers, bridges) published in `keys.METRICS`,
  each sample labelled ``role`` and ``process``; expired ones (a process that died) are skipped and
  deleted;
- gauges read from Redis now, one pipeline per scrape: ``mjbroker_queue_depth`` and
  ``mjbroker_running_tasks`` per configured account, ``mjbroker_account_status`` (1 for the state the
  account is in, 0 for the others), ``mjbroker_live_tasks`` and ``mjbroker_processes`` per role.

No api key is needed unless ``server.metrics_requires_key`` (Prometheus scrapers rarely carry one):
nothing here names more than account ids, actions and status codes. Not in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker import keys
from broker.account_status import AccountState
from broker.api.context import context_of
from broker.metrics import Snapshot, decode_snapshot, snapshot_of

__all__ = ["METRICS_HANDLERS", "render"]


class _Families(Collector):
    """The families of one scrape, for prometheus_client's exposition (which asks a Collector)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _merge(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    """One family per name, with the samples of every snapshot labelled by their process."""
    merged: dict[str, Metric] = {}
    for snap in snapshots:
        extra = {"role": snap.role, "process": snap.process}
        for family in snap.families:
            metric = merged.get(family.name)
            if metric is None:
                metric = merged[family.name] = Metric(family.name, family.documentation, family.type)
            elif metric.type != family.type:
                continue  # another version of the product disagrees on the type: keep the first
            for sample in family.samples:
                metric.add_sample(sample.name, {**sample.labels, **extra}, sample.value)
    return iter(merged.values())


def _gauges(
    account_ids: list[str], counts: list[Any], live: int, snapshots: list[Snapshot]
) -> Iterator[Metric]:
    depth = GaugeMetricFamily("mjbroker_queue_depth", "Tasks waiting for a slot", labels=["account"])
    running = GaugeMetricFamily("mjbroker_running_tasks", "Tasks holding a slot", labels=["account"])
    status = GaugeMetricFamily(
        "mjbroker_account_status",
        "1 for the state the account is in, 0 for the others",
        labels=["account", "state"],
    )
    for i, account_id in enumerate(account_ids):
        waiting, holding, state = counts[3 * i : 3 * i + 3]
        depth.add_metric([account_id], float(waiting))
        running.add_metric([account_id], float(holding))
        current = state.decode() if state else AccountState.CONNECTING.value
        for value in AccountState:
            status.add_metric([account_id, value.value], 1.0 if value.value == current else 0.0)
    yield from (depth, running, status)
    yield GaugeMetricFamily("mjbroker_live_tasks", "Tasks not finished yet", value=float(live))
    processes = GaugeMetricFamily("mjbroker_processes", "Processes whose metrics are live", labels=["role"])
    roles: dict[str, int] = {}
    for snap in snapshots:
        roles[snap.role] = roles.get(snap.role, 0) + 1
    for role, n in sorted(roles.items()):
        processes.add_metric([role], float(n))
    yield processes


async def render(request: Request[Any, Any, Any]) -> bytes:
    """The exposition of every live process's metrics and the Redis gauges."""
    ctx = context_of(request)
    now = ctx.clock()
    account_ids = [a.id for a in ctx.settings.accounts]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.METRICS)
        for live_set in keys.LIVE_TASKS:
            pipe.zcard(live_set)
        for account_id in account_ids:
            pipe.zcard(keys.account_waiting(account_id))
            pipe.zcard(keys.account_running(account_id))
            pipe.hget(keys.account_status(account_id), "state")
        raw, *counts = await pipe.execute()
    live = sum(counts[: keys.SHARDS])
    counts = counts[keys.SHARDS :]
    own = ctx.metrics_process
    snapshots = [snapshot_of(ctx.metrics.registry, role="web", process=own, until_ms=now)]
    expired = []
    for field, value in raw.items():
        name = field.decode()
        if name == own:
            continue  # read live above
        try:
            snap = decode_snapshot(value)
        except msgspec.DecodeError:
            expired.append(name)
            continue
        if snap.until_ms < now:
            expired.append(name)
        else:
            snapshots.append(snap)
    if expired:
        await ctx.redis.hdel(keys.METRICS, *expired)
    families = [*_merge(snapshots), *_gauges(account_ids, counts, int(live), snapshots)]
    return generate_latest(_Families(families))


@get("/metrics", include_in_schema=False, media_type=MediaType.TEXT)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(await render(request), media_type=CONTENT_TYPE_LATEST)


METRICS_HANDLERS = [metrics]
