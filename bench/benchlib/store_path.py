"""Part `store-path`: the CPU a fast job's store calls cost, per store, with nothing else running
(store_driver.py, a process per store spec, on the code of that spec: "redis@REV" works as in
the other parts). The latency and throughput parts measure the gateway as users see it; on
2 shared cores their CPU figures move by a millisecond from run to run, more than most changes
to the store. This part's figure moves by a few percent, so a change to the store's path can be
told from noise in one run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from benchlib.common import say
from benchlib.context import Bench
from benchlib.redis_store import describe
from benchlib.stats import Figure

BENCH_DIR = Path(__file__).resolve().parents[1]


async def store_path(bench: Bench) -> None:
    a = bench.args
    say(f"\n== store path: {a.n_store} serial fast jobs per store through the store alone "
        f"(create, take, running on, hand-over, complete), after {a.n_store // 10} warm-up; a 2-node "
        f"workflow, then one with {a.mem_pad_nodes} more nodes (as big as a real one)")
    for pad in (0, a.mem_pad_nodes):
        for store in a.stores:
            _one(bench, store, pad)


def _one(bench: Bench, store: str, pad: int) -> None:
    a = bench.args
    env = {**os.environ, "PYTHONPATH": f"{bench.source_of(store)}{os.pathsep}{BENCH_DIR}"}
    argv = [bench.python, "-m", "benchlib.store_driver", "--store", store.partition("@")[0],
            "--jobs", str(a.n_store), "--warmup", str(a.n_store // 10), "--redis-url", a.redis_url,
            "--pad-nodes", str(pad)]
    if store.startswith("redis"):
        argv += ["--prefix", bench.store_env(store)["REDIS_PREFIX"]]
    part = f"store-path-{store}" + (f"-{pad + 2}-nodes" if pad else "")
    meter = bench.load()
    out = subprocess.run(argv, env=env, cwd=BENCH_DIR, capture_output=True, text=True, timeout=a.phase_timeout)
    bench.note_load(part, meter)
    if out.returncode != 0:
        raise RuntimeError(f"store driver for {store} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    bench.raw.setdefault("store_path", {})[part] = result
    say(f"{part}: {result['cpu_ms']:.3f} ms of CPU per job in the store's process, "
        f"{result['wall_ms']:.3f} ms per job")
    figures = [Figure(part, "store CPU per job", round(result["cpu_ms"], 3), "ms")]
    if "redis" in result:
        say(f"  Redis: {describe(result['redis'])}")
        figures += [Figure(part, "Redis server CPU per job", result["redis"]["cpu_ms"], "ms"),
                    Figure(part, "script calls per job", result["redis"]["scripts"], "")]
    bench.add(*figures, noisy_if=part)
