"""mjsim throughput: 100 accounts on real websockets, 300 concurrent /imagine jobs at speed 0.

Prints events/s (gateway dispatches received by clients) and the process RSS (server + clients).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mjsim.apps import MIDJOURNEY
from mjsim.server import start_server
from mjsim.state import SimSettings


async def _client(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    ready: asyncio.Event,
    counts: dict[str, int],
    done: asyncio.Event,
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url + "?v=9&encoding=json&compress=zlib-stream")
    await ws.send_bytes(json.dumps({"op": 2, "d": {"token": token}}).encode())
    inflate = zlib.decompressobj()
    session: dict[str, str] = {}

    async def reader() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            payload = json.loads(inflate.decompress(msg.data))
            if payload.get("op") != 0:
                continue
            t = payload["t"]
            if t == "READY":
                session["id"] = payload["d"]["session_id"]
                ready.set()
            counts["events"] += 1
            if t == "MESSAGE_CREATE" and payload["d"]["attachments"]:
                counts["finals"] += 1
                if counts["finals"] >= counts["target"]:
                    done.set()

    asyncio.get_running_loop().create_task(reader())
    await asyncio.wait_for(ready.wait(), 10)
    return ws, session["id"]


async def _run(accounts: int, jobs: int) -> dict[str, Any]:
    settings = SimSettings(speed=0, ack_delay=0, progress_steps=3)
    server = await start_server(settings=settings, seed=7, account_count=accounts)
    state = server.sim.state
    accts = list(state.accounts.values())
    counts = {"events": 0, "finals": 0, "target": jobs}
    done = asyncio.Event()
    imagine = next(c for c in MIDJOURNEY.commands if c.name == "imagine")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        conns = await asyncio.gather(
            *(_client(http, server.gateway_url, a.token, asyncio.Event(), counts, done) for a in accts)
        )
        counts["events"] = 0
        t0 = time.perf_counter()

        async def submit(i: int) -> None:
            a = accts[i % len(accts)]
            body = {
                "type": 2,
                "application_id": MIDJOURNEY.id,
                "guild_id": a.guild_id,
                "channel_id": a.channel_id,
                "session_id": conns[i % len(accts)][1],
                "nonce": str(10**18 + i),
                "data": {
                    "id": imagine.id,
                    "version": imagine.version,
                    "name": "imagine",
                    "type": 1,
                    "options": [{"type": 3, "name": "prompt", "value": f"bench prompt {i}"}],
                },
            }
            async with http.post(
                server.base_url + "/api/v9/interactions", json=body, headers={"Authorization": a.token}
            ) as resp:
                assert resp.status == 204, await resp.text()

        # 3 per account == the default concurrency limit, so all 300 run at once.
        await asyncio.gather(*(submit(i) for i in range(jobs)))
        await asyncio.wait_for(done.wait(), 50)
        elapsed = time.perf_counter() - t0
        rss = psutil.Process().memory_info().rss
        for ws, _ in conns:
            await ws.close()
    await server.close()
    return {
        "accounts": accounts,
        "jobs": jobs,
        "events": counts["events"],
        "seconds": round(elapsed, 3),
        "events_per_s": round(counts["events"] / elapsed, 1),
        "rss_mb": round(rss / 2**20, 1),
    }


def run(accounts: int = 100, jobs: int = 300) -> dict[str, Any]:
    """Run the benchmark in a fresh event loop and return its figures."""
    return asyncio.run(_run(accounts, jobs))


if __name__ == "__main__":
    print(json.dumps(run()))
