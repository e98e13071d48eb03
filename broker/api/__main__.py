"""`python -m broker.api`: serve the API with granian (the Procfile's `web` line).

Host and port come from `server.host`/`server.port` of the config unless given here; the number of
granian worker processes from `--workers` or `MJBROKER_WEB_WORKERS` (default 1).
"""

from __future__ import annotations

import argparse
import os

from granian import Granian
from granian.constants import Interfaces

from broker.config import ConfigError, load_settings
from broker.logs import granian_log_config, setup_logging
from broker.redis_client import check_or_exit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.api", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: MJBROKER_CONFIG or ./config.yaml)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MJBROKER_WEB_WORKERS", "1")))
    args = parser.parse_args(argv)
    if args.config:
        # the factory runs in granian's worker processes: hand the path over through the environment
        os.environ["MJBROKER_CONFIG"] = args.config
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
    setup_logging(settings.secrets())
    check_or_exit(settings)
    host, port = args.host or settings.server.host, args.port or settings.server.port
    # for the app's "web ready on ..." line, in granian's worker processes
    os.environ["MJBROKER_WEB_ADDRESS"] = f"{host}:{port}"
    Granian(
        "broker.api.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=max(1, args.workers),
        # our access log is the app's (`broker.api.observe`); granian's lines take our format
        log_access=False,
        log_dictconfig=granian_log_config(),
    ).serve()


if __name__ == "__main__":
    main()
