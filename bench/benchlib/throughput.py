"""Part 2: jobs/s of a pipelined direct client vs concurrent gateway clients, per GENERATION_WORKERS."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import time
from typing import Any

from benchlib.common import say
from benchlib.context import Bench
from benchlib.direct import DirectComfy
from benchlib.gateway_client import GatewayClient
from benchlib.meters import ComfyIdleProbe, CpuMeter
from benchlib.procs import Managed
from benchlib.stats import Figure, summary_ms
from benchlib.workloads import direct_workflow, empty_save


# -- 2. throughput --------------------------------------------------------------------
async def throughput(bench: Bench) -> None:
    a = bench.args
    per_round = [a.n_throughput // a.rounds + (1 if r < a.n_throughput % a.rounds else 0) for r in range(a.rounds)]
    say(f"\n== 2. throughput: {a.n_throughput} jobs per side in {a.rounds} round(s) of {per_round}; direct "
        f"pipelined vs {a.clients} concurrent sync clients; GENERATION_WORKERS in {a.gen_workers}")
    comfy_url = bench.ensure_comfyui()
    bench.raw["throughput"] = {}
    for workers in a.gen_workers:
        gw = bench.gateway(comfy_url, workers=workers, tag="throughput")
        d_time = g_time = 0.0
        rounds: list[dict[str, Any]] = []
        lat: list[float] = []
        try:
            async with GatewayClient(gw.url, a.clients + 4, a.job_timeout) as client:
                await asyncio.gather(*(client.sync(empty_save("warm", a.image_size))
                                       for _ in range(min(a.clients, 8))))
                for r in range(a.rounds):
                    # alternate which side runs first, so slow drift hits both alike
                    order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
                    res: dict[str, Any] = {}
                    for side in order:
                        if side == "direct":
                            res["direct"] = await _direct_pipelined(bench, comfy_url, per_round[r], f"gw{workers}-r{r}")
                        else:
                            res["gateway"] = await _gateway_concurrent(bench, client, gw, per_round[r], a.clients,
                                                                            f"gw{workers}-r{r}")
                    d_time += res["direct"]["seconds"]
                    g_time += res["gateway"]["seconds"]
                    lat += res["gateway"].pop("latencies")
                    rounds.append(res)
                    say(f"  round {r + 1}: direct {res['direct']['jobs_per_s']:.1f} jobs/s, gateway "
                        f"{res['gateway']['jobs_per_s']:.1f} jobs/s, ratio "
                        f"{res['gateway']['jobs_per_s'] / res['direct']['jobs_per_s']:.3f}; CPU ms/job direct "
                        f"{res['direct']['cpu_ms_per_job']}, gateway {res['gateway']['cpu_ms_per_job']}; "
                        f"ComfyUI idle {100 * res['direct']['comfy_idle']:.0f}% / "
                        f"{100 * res['gateway']['comfy_idle']:.0f}% of polls")
        finally:
            bench.stop(gw)
        n = a.n_throughput
        direct_rate, gw_rate = n / d_time, n / g_time
        idle = {side: sum(r[side]["comfy_idle"] * r[side]["seconds"] for r in rounds)
                / sum(r[side]["seconds"] for r in rounds) for side in ("direct", "gateway")}
        ratio = gw_rate / direct_rate
        lat_ms = summary_ms(lat)
        say(f"GENERATION_WORKERS={workers}: direct {direct_rate:.1f} jobs/s, gateway {gw_rate:.1f} jobs/s, "
            f"ratio {ratio:.3f} (gateway per-call median {lat_ms['median']:.1f} ms, p99 {lat_ms['p99']:.1f})")
        bench.raw["throughput"][f"gw{workers}"] = {
            "direct_jobs_per_s": direct_rate, "gateway_jobs_per_s": gw_rate, "ratio": ratio,
            "gateway_call_ms": lat_ms, "rounds": rounds, "comfy_idle": idle}
        bench.add(
            Figure("throughput", f"direct pipelined (rounds beside gw{workers})", direct_rate, "jobs/s"),
            Figure("throughput", f"gateway, {a.clients} clients, GENERATION_WORKERS={workers}", gw_rate, "jobs/s"),
            Figure("throughput", f"ratio gateway/direct, GENERATION_WORKERS={workers}", ratio, "x",
                   ">= 0.90", ratio >= 0.90),
            Figure("throughput", f"ComfyUI idle during gateway run, gw{workers}",
                   100 * idle["gateway"], "%", note=f"direct {100 * idle['direct']:.1f}%"),
            noisy_if=f"throughput-gw{workers}-",
        )

async def _direct_pipelined(bench: Bench, comfy_url: str, n: int, tag: str) -> dict[str, Any]:
    a = bench.args
    out = bench.newdir("direct-tput")
    try:
        async with DirectComfy(comfy_url, out, timeout=a.job_timeout) as direct:
            for _ in range(3):  # warm-up
                await direct.run(direct_workflow(a.image_size))
            workflows = [direct_workflow(a.image_size) for _ in range(n)]
            with CpuMeter(comfyui=bench.comfy.pid if bench.comfy else None, client=os.getpid()) as cpu, \
                    bench.load() as load:
                async with ComfyIdleProbe(comfy_url) as probe:
                    t0 = time.perf_counter()
                    tasks = []
                    for wf in workflows:  # all posted at once: ComfyUI's own queue holds them
                        pid, fut = await direct.post(wf)
                        tasks.append(asyncio.create_task(direct.finish(pid, fut)))
                    await asyncio.wait_for(asyncio.gather(*tasks), a.phase_timeout)
                    elapsed = time.perf_counter() - t0
            if direct.files_written != n + 3:
                raise RuntimeError(f"direct client wrote {direct.files_written} files, expected {n + 3}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    bench.note_load(f"throughput-{tag}-direct", load, quiet=True)
    return {"seconds": elapsed, "jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu.per_job_ms(n),
            "comfy_idle": probe.idle_fraction}

async def _gateway_concurrent(bench: Bench, client: GatewayClient, gw: Managed, n: int, clients: int,
                              tag: str) -> dict[str, Any]:
    a = bench.args
    remaining = itertools.count()
    latencies: list[float] = []
    workflows = [empty_save("bench", a.image_size) for _ in range(n)]

    async def worker() -> None:
        while (i := next(remaining)) < n:
            t = time.perf_counter()
            await client.sync(workflows[i])
            latencies.append(time.perf_counter() - t)

    with CpuMeter(gateway=gw.pid, comfyui=bench.comfy.pid if bench.comfy else None,
                  client=os.getpid()) as cpu, bench.load() as load:
        async with ComfyIdleProbe(bench.comfy_url or "") as probe:
            t0 = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), a.phase_timeout)
            elapsed = time.perf_counter() - t0
    bench.note_load(f"throughput-{tag}-gateway", load, quiet=True)
    return {"seconds": elapsed, "jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu.per_job_ms(n),
            "comfy_idle": probe.idle_fraction, "latencies": latencies}
