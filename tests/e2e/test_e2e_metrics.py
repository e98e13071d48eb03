"""`/metrics` and the log lines with every process real: a task through web, worker, bridge and mjsim."""

from __future__ import annotations

import asyncio
import json

import httpx
from e2e_support import Stack
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(stack: Stack) -> Samples:
    """Every sample of `/metrics` (asked without a key), parsed by prometheus_client's parser and
    summed over the processes: (sample name, labels without role/process) -> value."""
    async with httpx.AsyncClient(base_url=str(stack.api.base_url), timeout=10) as anonymous:
        response = await anonymous.get("/metrics")
    assert response.status_code == 200, response.text
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            per_process = "process" in s.labels
            labels = frozenset(
                (k, v) for k, v in s.labels.items() if not (per_process and k in ("role", "process"))
            )
            out[(s.name, labels)] = out.get((s.name, labels), 0.0) + s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


#: what one imagine with a hook moves, and where it is counted (web, worker, bridge)
MOVED = [
    ("mjbroker_tasks_submitted_total", {"action": "IMAGINE", "code": "1"}),
    ("mjbroker_tasks_finished_total", {"action": "IMAGINE", "status": "SUCCESS"}),
    ("mjbroker_interactions_sent_total", {"account": "a0"}),
    ("mjbroker_hook_deliveries_total", {"result": "ok"}),
    ("mjbroker_hook_delivery_seconds_count", {}),
    ("mjbroker_event_to_hook_seconds_count", {}),
    ("mjbroker_gateway_reconnects_total", {"account": "a0"}),
]


async def test_a_task_moves_the_counters_of_every_process(stack: Stack) -> None:
    before = await scrape(stack)
    reply = await stack.post(
        "/mj/submit/imagine",
        {
            "prompt": "a metered fox",
            "notifyHook": stack.hook_url("metrics"),
            "accountFilter": {"instanceId": "a0"},
        },
    )
    assert reply["code"] == 1, reply
    task_id = str(reply["result"])
    assert (await stack.wait_task(task_id))["status"] == "SUCCESS"
    await stack.wait_hook(task_id, "SUCCESS")
    await stack.fault(0, "reconnect")
    after: Samples = {}
    async with asyncio.timeout(15):
        while True:
            after = await scrape(stack)
            if all(value(after, n, **ls) > value(before, n, **ls) for n, ls in MOVED):
                break
            await asyncio.sleep(0.2)
    assert value(after, "mjbroker_queue_depth", account="a0") == 0
    assert value(after, "mjbroker_account_status", account="a0", state="ONLINE") in (0.0, 1.0)
    assert value(after, "mjbroker_processes", role="worker") >= 1
    assert value(after, "mjbroker_processes", role="bridge") >= 1

    # The task's life in the logs: one line per status change, each in the process that made it.
    def lines(name: str) -> list[str]:
        return [line for line in stack.procs[name].log_path.read_text().splitlines() if task_id in line]

    web, bridge = lines("web"), lines("bridge")
    worker = [json.loads(line)["message"] for line in lines("worker")]
    assert any(f"POST /mj/submit/imagine 200 code=1 task={task_id} " in line for line in web), web
    assert any("NOT_START -> SUBMITTED" in line for line in bridge), bridge
    assert [m for m in worker if m.startswith(f"task {task_id}")] in (
        [
            f"task {task_id} IMAGINE account=a0: SUBMITTED -> IN_PROGRESS progress={p}",
            f"task {task_id} IMAGINE account=a0: IN_PROGRESS -> SUCCESS progress=100%",
        ]
        for p in ("0%", "50%", "100%")
    ) or worker == [f"task {task_id} IMAGINE account=a0: SUBMITTED -> SUCCESS progress=100%"], worker


async def test_each_process_says_once_that_it_is_ready_and_the_worker_logs_json(stack: Stack) -> None:
    web = stack.procs["web"].log_path.read_text()
    bridge = stack.procs["bridge"].log_path.read_text()
    worker_lines = stack.procs["worker"].log_path.read_text().splitlines()
    assert f"web ready on 127.0.0.1:{stack.web_port}" in web
    assert "bridge holds a0, a1, a2, a3, a4" in bridge
    records = [json.loads(line) for line in worker_lines if line.strip() and not line.startswith("--- start")]
    assert any(r["message"].startswith("worker ready: consumers of gateway events") for r in records)
    assert all(r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for r in records)
    for name in ("web", "worker", "bridge"):
        assert "Traceback" not in stack.procs[name].log_path.read_text(), name
