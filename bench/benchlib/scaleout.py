"""Part `scaleout` (fake ComfyUIs, Redis store): jobs/s of two gateway processes sharing one
Redis in front of two backends, against one process in front of one backend (issue 11: at
least 1.9 times).

The backends must not be the bottleneck, or the figure measures them: the fake answers at once
(`--scaleout-node-seconds 0`, no FakeSlow node), and `--scaleout-fakes` fakes stand behind each
gateway process. On a machine with few cores the gateways, fakes, Redis and this client share
them, so beside the jobs/s the part reports what does not depend on the core count: each
gateway's CPU per job and jobs per gateway CPU-second in both phases (if the gateway scales,
they stay the same with two processes), how many cores each gateway process kept busy (1.0 =
saturated) and how many the machine had busy in all.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from benchlib.common import say
from benchlib.context import Bench
from benchlib.gateway_client import GatewayClient
from benchlib.meters import CpuMeter, MachineCpu, redis_server_pid
from benchlib.procs import Managed
from benchlib.redis_store import describe
from benchlib.stats import Figure, summary_ms
from benchlib.workloads import next_color

SCALEOUT_TARGET = 1.9


def workflow(seconds: float) -> dict[str, Any]:
    wf: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                    "color": next_color()}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "so"}}}
    if seconds > 0:  # a backend that takes this long per prompt: the backends become the bound
        wf["2"] = {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": 1}}
        wf["3"]["inputs"]["images"] = ["2", 0]
    return wf


async def scaleout(bench: Bench) -> None:
    a = bench.args
    k = a.scaleout_fakes
    say(f"\n== scaleout: 1 gateway process + {k} fake(s) vs 2 processes on one Redis + {2 * k} fakes; "
        f"{a.scaleout_jobs} jobs from {a.scaleout_clients} sync clients; GENERATION_WORKERS={a.scaleout_workers}; "
        f"fake node time {a.scaleout_node_seconds:g} s")
    fakes = [bench.new_fake() for _ in range(2 * k)]
    results: dict[int, dict[str, Any]] = {}
    try:
        for processes in (1, 2):
            backends = fakes[:k * processes]
            results[processes] = await _phase(bench, processes, backends)
    finally:
        for fake in fakes:
            bench.stop(fake)
    _figures(bench, results[1], results[2])


async def _phase(bench: Bench, processes: int, fakes: list[Managed]) -> dict[str, Any]:
    a = bench.args
    env = bench.store_env("redis")  # one prefix: the processes share the queues and the records
    urls = ",".join(f.url for f in fakes)
    gws = [bench.gateway(urls, workers=a.scaleout_workers, tag=f"scaleout-{processes}p", store="redis", env=env)
           for _ in range(processes)]
    tag = f"scaleout-{processes}p"
    try:
        async with GatewayClient(gws[0].url, a.scaleout_clients + 4, a.job_timeout) as first, \
                GatewayClient(gws[-1].url, a.scaleout_clients + 4, a.job_timeout) as last:
            clients = [first, last][:processes]
            for c in clients:  # warm each process's code paths (and its connections)
                await asyncio.gather(*(c.sync(workflow(a.scaleout_node_seconds)) for _ in range(8)))
            n, counter, latencies = a.scaleout_jobs, itertools.count(), []

            async def worker(i: int) -> None:
                client = clients[i % processes]  # the load is spread evenly over the processes
                while next(counter) < n:
                    t = time.perf_counter()
                    await client.sync(workflow(a.scaleout_node_seconds))
                    latencies.append(time.perf_counter() - t)

            pids = {f"gateway{i + 1}": gw.pid for i, gw in enumerate(gws)}
            pids.update({f"fake{i + 1}": f.pid for i, f in enumerate(fakes)})
            with CpuMeter(**pids, redis=redis_server_pid(), client=os.getpid()) as cpu, MachineCpu() as machine, \
                    bench.load() as load, bench.redis_stats() as rstats:
                t0 = time.perf_counter()
                await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(a.scaleout_clients))),
                                       a.phase_timeout)
                elapsed = time.perf_counter() - t0
    finally:
        for gw in gws:
            bench.stop(gw)
    bench.note_load(tag, load)
    gw_cpu = sum(v for name, v in cpu.used.items() if name.startswith("gateway"))
    res = {
        "processes": processes, "backends": len(fakes), "jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed,
        "cpu_s": {name: round(v, 3) for name, v in cpu.used.items()},
        "gateway_cpu_ms_per_job": 1000 * gw_cpu / n, "jobs_per_gateway_cpu_s": n / gw_cpu if gw_cpu else float("nan"),
        "gateway_cores": {name: round(v / elapsed, 3) for name, v in cpu.used.items() if name.startswith("gateway")},
        "fakes_cpu_ms_per_job": 1000 * sum(v for nm, v in cpu.used.items() if nm.startswith("fake")) / n,
        "redis_cpu_ms_per_job": 1000 * cpu.used.get("redis", float("nan")) / n,
        "client_cpu_ms_per_job": 1000 * cpu.used.get("client", 0.0) / n,
        "machine_busy_cores": machine.busy_cores, "machine_cores": machine.cores,
        "redis": rstats.per_job(n), "call_ms": summary_ms(latencies),
    }
    say(f"{tag}: {res['jobs_per_s']:.1f} jobs/s ({n} jobs in {elapsed:.1f} s; call median "
        f"{res['call_ms']['median']:.1f} ms); gateway CPU {res['gateway_cpu_ms_per_job']:.2f} ms/job = "
        f"{res['jobs_per_gateway_cpu_s']:.0f} jobs per gateway CPU-second; gateway cores busy "
        f"{res['gateway_cores']}; fakes {res['fakes_cpu_ms_per_job']:.2f}, Redis {res['redis_cpu_ms_per_job']:.2f}, "
        f"client {res['client_cpu_ms_per_job']:.2f} ms/job; machine busy {machine.busy_cores:.2f} of "
        f"{machine.cores} cores; Redis {describe(res['redis'])}")
    bench.raw.setdefault("scaleout", {})[tag] = res
    return res


def _figures(bench: Bench, one: dict[str, Any], two: dict[str, Any]) -> None:
    ratio = two["jobs_per_s"] / one["jobs_per_s"]
    # What two processes would give if each had the CPU one had: the per-process efficiency,
    # independent of how many cores the machine lends them.
    projected = 2 * one["gateway_cpu_ms_per_job"] / two["gateway_cpu_ms_per_job"]
    cores = one["machine_cores"]
    saturated = two["machine_busy_cores"] >= 0.9 * cores
    note = (f"machine busy {two['machine_busy_cores']:.2f} of {cores} cores: bounded by the cores"
            if saturated else f"machine busy {two['machine_busy_cores']:.2f} of {cores} cores")
    alone = sum(one["gateway_cores"].values())
    if alone < 0.9:  # the one process did not have a core to itself: the ratio flatters two
        note += f"; the 1-process gateway had only {alone:.2f} cores"
    say(f"scaleout: 2 processes / 1 process = {ratio:.2f}x measured; {projected:.2f}x from the gateway CPU "
        f"per job ({one['gateway_cpu_ms_per_job']:.2f} ms with one process, {two['gateway_cpu_ms_per_job']:.2f} "
        f"with two); {note}")
    rows = []
    for res in (one, two):
        label = f"{res['processes']} process{'es' if res['processes'] > 1 else ''}, {res['backends']} backend(s)"
        rows += [
            Figure("scaleout", f"jobs/s, {label}", res["jobs_per_s"], "jobs/s"),
            Figure("scaleout", f"gateway CPU per job, {label}", res["gateway_cpu_ms_per_job"], "ms"),
            Figure("scaleout", f"jobs per gateway CPU-second, {label}", round(res["jobs_per_gateway_cpu_s"], 1), ""),
            Figure("scaleout", f"cores busy, {label}", round(res["machine_busy_cores"], 2), "",
                   note=f"of {res['machine_cores']}; gateways {', '.join(f'{v:.2f}' for v in res['gateway_cores'].values())}"),
            Figure("scaleout", f"Redis commands per job, {label}", res["redis"]["total"], ""),
        ]
    rows += [
        Figure("scaleout", "throughput 2 processes / 1 process", ratio, "x", f">= {SCALEOUT_TARGET}",
               ratio >= SCALEOUT_TARGET, note=note),
        Figure("scaleout", "2 x gateway CPU per job (1 process) / (2 processes)", projected, "x",
               note="scaling if each process had a core of its own"),
    ]
    bench.add(*rows, noisy_if="scaleout-")
