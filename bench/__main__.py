"""`python -m bench`: run every `bench/*_bench.py` module's `run()` and print its figures."""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in HERE.glob("*_bench.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    # Every bench's temp dirs (Redis data, logs, configs) go under one that is removed at the end.
    with tempfile.TemporaryDirectory(prefix="mjb-bench-", ignore_cleanup_errors=True) as scratch:
        tempfile.tempdir = scratch
        try:
            return _run(names)
        finally:
            tempfile.tempdir = None


def _run(names: list[str]) -> int:
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            figures = module.run()
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        for key, value in (figures or {}).items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"   {key}: {shown}")
        print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
