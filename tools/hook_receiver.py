"""A notify-hook receiver for trying mjbroker out: prints every delivery and checks its signature.

    python tools/hook_receiver.py --port 9000 [--secret <hooks.secret>]

Then submit with `"notifyHook": "http://127.0.0.1:9000/hook"`. It answers 204, keeps the highest
`X-Mjbroker-Task-Version` seen per task and reports deliveries that arrive out of order (there should
be none) or repeated (possible: delivery is at least once). Standard library only, so the snippet
doubles as an example of verifying `X-Mjbroker-Signature` in a receiver of your own.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_latest: dict[str, int] = {}


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: int = 300) -> bool:
    """True when `signature` is `sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>` and fresh."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


class _Handler(BaseHTTPRequestHandler):
    secret = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        version = int(self.headers.get("X-Mjbroker-Task-Version") or 0)
        checks = []
        if self.secret:
            ok = verify(
                self.secret,
                self.headers.get("X-Mjbroker-Timestamp", ""),
                body,
                self.headers.get("X-Mjbroker-Signature", ""),
            )
            checks.append("signature ok" if ok else "SIGNATURE INVALID")
        try:
            task = json.loads(body)
        except ValueError:
            task = {}
        task_id = str(task.get("id"))
        seen = _latest.get(task_id, 0)
        if version < seen:
            checks.append(f"OUT OF ORDER (had v{seen})")
        elif version == seen:
            checks.append("repeat")
        _latest[task_id] = max(seen, version)
        print(
            f"{time.strftime('%H:%M:%S')} task {task_id} v{version} {task.get('action')} "
            f"{task.get('status')} {task.get('progress')!r} {' '.join(checks)}",
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per delivery above
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default="", help="hooks.secret from config.yaml, to verify signatures")
    args = parser.parse_args()
    _Handler.secret = args.secret
    print(f"listening on http://{args.host}:{args.port}/hook", flush=True)
    ThreadingHTTPServer((args.host, args.port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
