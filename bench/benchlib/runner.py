"""One benchmark run: temp folder, signals, the chosen parts in order, then the report; every
process started is stopped whatever happens."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil

from benchlib.cli.options import PARTS
from benchlib.common import say
from benchlib.context import Bench
from benchlib.cores import keep_off
from benchlib.fanout import fanout
from benchlib.latency import latency
from benchlib.loop_stall import loop_stall
from benchlib.memory import mem_big, mem_queue
from benchlib.procs import REPO as SRC_DEFAULT, ProcessManager, imported_from, snapshot_source
from benchlib.report import git_rev as _git_rev, report
from benchlib.scaleout import scaleout
from benchlib.store_path import store_path
from benchlib.stats import Figure
from benchlib.throughput import throughput


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    (tmp / "logs").mkdir()
    if args.comfyui_cores:
        keep_off(args.comfyui_cores)  # before anything starts: the processes started inherit it
    pm = ProcessManager(tmp / "logs")
    bench = Bench(args, pm, tmp, args.python)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Also when started in the background by a shell that ignores SIGINT for its children.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say(f"comfy_gateway benchmark: parts {', '.join(args.parts)}; temp {tmp}")
    say(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / (1 << 30):.1f} GiB, "
        f"Python {platform.python_version()}, git {_git_rev()}")
    started = time.monotonic()
    failed: list[str] = []
    interrupted = False
    try:
        if args.gateway_rev:
            commit = snapshot_source(args.gateway_rev, tmp / "src")
            bench.src = tmp / "src"
            say(f"gateway code: {args.gateway_rev} = {commit[:12]} (git archive into {bench.src})")
        else:
            say(f"gateway code: the work tree {SRC_DEFAULT} (git {_git_rev()})")
        where = imported_from(args.python, bench.src)
        say(f"  comfy_gateway imports from {where}")
        bench.raw["gateway_source"] = {"rev": args.gateway_rev or "worktree", "imported_from": where}
        steps: dict[str, Callable[[Bench], Awaitable[None]]] = {
            "latency": latency, "throughput": throughput, "store-path": store_path,
            "mem-queue": mem_queue, "mem-big": mem_big, "scaleout": scaleout, "loop-stall": loop_stall,
            "fanout": fanout}
        for part in PARTS:
            if part not in args.parts:
                continue
            try:
                bench.wait_quiet(part)
                asyncio.run(steps[part](bench))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - report it, go on with the other parts
                failed.append(part)
                say(f"!! part {part} failed: {type(exc).__name__}: {exc}")
                first_line = (str(exc).splitlines() or [""])[0][:60]
                bench.add(Figure(part, "part did not complete", None, "", "completes", False,
                                 note=f"{type(exc).__name__}: {first_line}"))
    except KeyboardInterrupt:
        say("\ninterrupted: stopping everything this run started")
        interrupted = True
        pm.stop_all()
    finally:
        pm.stop_all()
        bench.drop_redis_keys()
        if args.keep_temp:
            say(f"temp folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - started
    return report(bench, total, failed, interrupted)
