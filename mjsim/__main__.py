"""CLI: ``python -m mjsim --host 127.0.0.1 --port 8081 --accounts N [--seed S] [--speed F]``.

Prints one JSON line per account, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import msgspec
import uvloop

from mjsim.server import start_server
from mjsim.state import AccountSpec, SimSettings

log = logging.getLogger("mjsim")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mjsim", description="Local fake Discord with Midjourney bots")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--accounts", type=int, default=1, help="accounts to generate")
    p.add_argument(
        "--accounts-file",
        type=Path,
        help='JSON list of {"token","user_id","guild_id","channel_id",...} to create',
    )
    p.add_argument("--seed", type=int, default=None, help="repeatable tokens/ids")
    p.add_argument("--speed", type=float, default=1.0, help="delay multiplier; 0 = no waiting")
    p.add_argument("--job-seconds", type=float, default=2.0)
    p.add_argument("--progress-steps", type=int, default=3)
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    specs: list[AccountSpec] = []
    if args.accounts_file is not None:
        specs = msgspec.json.decode(args.accounts_file.read_bytes(), type=list[AccountSpec])
    generated = args.accounts if args.accounts_file is None else max(0, args.accounts - len(specs))
    settings = SimSettings(speed=args.speed, job_seconds=args.job_seconds, progress_steps=args.progress_steps)
    server = await start_server(
        host=args.host,
        port=args.port,
        settings=settings,
        seed=args.seed,
        accounts=specs,
        account_count=generated,
    )
    state = server.sim.state
    for account in state.accounts.values():
        summary = account.summary(state.base_url, state.gateway_url)
        summary.pop("username")
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvloop.run(_main(args))


if __name__ == "__main__":
    main()
