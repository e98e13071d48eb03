"""`python -m bench [--baseline REF] [NAME ...]`: run every `bench/*_bench.py` module's `run()`.

NAME picks the benches whose module name contains it. With ``--baseline REF`` (or the environment's
``MJB_BENCH_BASELINE``; ``make bench BASELINE=REF``), REF is checked out once into a temporary git
worktree, and every bench whose `run` takes a ``baseline`` (api, pipeline) also runs the product's
processes from it, alternating with this tree, and reports both sides and their ratios. The
worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.stack import ProductTree

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=os.environ.get("MJB_BENCH_BASELINE") or None)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in HERE.glob("*_bench.py"))
    if args.names:
        names = [n for n in names if any(a in n for a in args.names)]
    started = time.monotonic()
    # Every bench's temp dirs (Redis data, logs, configs, the baseline) go under one removed at the end.
    with tempfile.TemporaryDirectory(prefix="mjb-bench-", ignore_cleanup_errors=True) as scratch:
        tempfile.tempdir = scratch
        try:
            with contextlib.ExitStack() as stack:
                baseline = None
                if args.baseline:
                    baseline = stack.enter_context(ProductTree.checkout(args.baseline))
                    print(f"baseline {args.baseline} checked out in {baseline.path}", flush=True)
                failed = _run(names, baseline)
        finally:
            tempfile.tempdir = None
    print(f"== all benches: {time.monotonic() - started:.0f}s", flush=True)
    return 1 if failed else 0


def _run(names: list[str], baseline: ProductTree | None) -> int:
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            takes_baseline = "baseline" in inspect.signature(module.run).parameters
            figures = module.run(baseline=baseline) if takes_baseline else module.run()
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        for key, value in (figures or {}).items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"   {key}: {shown}")
        print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
