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
from benchlib.stats import Figure, bootstrap_interval, summary_ms, verdict_within
from benchlib.workloads import direct_workflow, empty_save


# -- 2. throughput --------------------------------------------------------------------
THROUGHPUT_TARGET = 0.95  # issue 11: both stores, 4 and 16 clients
BOOTSTRAP_ROUNDS = 5  # from this many rounds on, the verdict reads an interval, not the range


def ratio_spread(rounds: list[dict[str, Any]]) -> tuple[float, float, str]:
    """How far the run's ratio could be off, for its verdict. Each round runs the direct client
    and the gateway back to back, so a drift of ComfyUI's own speed (single rounds here differ by
    0.1-0.4) mostly cancels within a round, not across rounds. With BOOTSTRAP_ROUNDS rounds or
    more: the 95% bootstrap interval of the run's ratio over resampled rounds (the ratio of the
    resampled rounds' summed rates, as the run's own ratio is); with fewer, an interval from 2-4
    values would mean little, and the spread is the range of the rounds' ratios (which only
    widens with more rounds: hence the interval beyond)."""
    ratios = [r["gateway"]["jobs_per_s"] / r["direct"]["jobs_per_s"] for r in rounds]
    if len(rounds) < BOOTSTRAP_ROUNDS:
        return min(ratios), max(ratios), ""

    def rate(side: str, picks: list[int]) -> float:
        jobs = sum(rounds[i][side]["jobs_per_s"] * rounds[i][side]["seconds"] for i in picks)
        return jobs / sum(rounds[i][side]["seconds"] for i in picks)

    def ratio_of(picks: list[int]) -> float:
        return rate("gateway", picks) / rate("direct", picks)

    low, high = bootstrap_interval(ratio_of, len(rounds))
    return low, high, "95% interval"


async def throughput(bench: Bench) -> None:
    a = bench.args
    per_round = [a.n_throughput // a.rounds + (1 if r < a.n_throughput % a.rounds else 0) for r in range(a.rounds)]
    say(f"\n== 2. throughput: {a.n_throughput} jobs per side in {a.rounds} round(s) of {per_round}; direct "
        f"pipelined vs {a.clients} concurrent sync clients; stores {a.stores}; GENERATION_WORKERS in {a.gen_workers}")
    comfy_url = bench.ensure_comfyui()
    bench.raw["throughput"] = {}
    for store in a.stores:
        for workers in a.gen_workers:
            gw = bench.gateway(comfy_url, workers=workers, tag=f"throughput-{store}", store=store)
            try:
                for clients in a.clients:
                    await _one_config(bench, gw, comfy_url, per_round, store, workers, clients)
            finally:
                bench.stop(gw)


async def _one_config(bench: Bench, gw: Managed, comfy_url: str, per_round: list[int], store: str, workers: int,
                      clients: int) -> None:
    a = bench.args
    tag = f"{store}-gw{workers}-c{clients}"
    d_time = g_time = 0.0
    rounds: list[dict[str, Any]] = []
    lat: list[float] = []
    async with GatewayClient(gw.url, clients + 4, a.job_timeout) as client:
        await asyncio.gather(*(client.sync(empty_save("warm", a.image_size)) for _ in range(min(clients, 8))))
        for r in range(a.rounds):
            # alternate which side runs first, so slow drift hits both alike
            order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
            res: dict[str, Any] = {}
            for side in order:
                if side == "direct":
                    res["direct"] = await _direct_pipelined(bench, comfy_url, per_round[r], f"{tag}-r{r}")
                else:
                    res["gateway"] = await _gateway_concurrent(bench, client, gw, per_round[r], clients,
                                                               f"{tag}-r{r}")
            d_time += res["direct"]["seconds"]
            g_time += res["gateway"]["seconds"]
            lat += res["gateway"].pop("latencies")
            rounds.append(res)
            say(f"  {tag} round {r + 1}: direct {res['direct']['jobs_per_s']:.1f} jobs/s, gateway "
                f"{res['gateway']['jobs_per_s']:.1f} jobs/s, ratio "
                f"{res['gateway']['jobs_per_s'] / res['direct']['jobs_per_s']:.3f}; CPU ms/job direct "
                f"{res['direct']['cpu_ms_per_job']}, gateway {res['gateway']['cpu_ms_per_job']}; "
                f"ComfyUI idle {100 * res['direct']['comfy_idle']:.0f}% / "
                f"{100 * res['gateway']['comfy_idle']:.0f}% of polls; Redis {res['gateway']['redis']['total']} "
                f"commands/job, Redis server CPU {res['gateway']['redis']['cpu_ms']} ms/job")
    n = a.n_throughput
    direct_rate, gw_rate = n / d_time, n / g_time
    idle = {side: sum(r[side]["comfy_idle"] * r[side]["seconds"] for r in rounds)
            / sum(r[side]["seconds"] for r in rounds) for side in ("direct", "gateway")}
    ratio = gw_rate / direct_rate
    lat_ms = summary_ms(lat)
    gw_cpu = sum(r["gateway"]["cpu_ms_per_job"].get("gateway", 0) * r["gateway"]["jobs"] for r in rounds) / n
    redis_total = sum(r["gateway"]["redis"]["total"] * r["gateway"]["jobs"] for r in rounds) / n
    redis_cpu = sum(r["gateway"]["redis"]["cpu_ms"] * r["gateway"]["jobs"] for r in rounds) / n
    say(f"{tag}: direct {direct_rate:.1f} jobs/s, gateway {gw_rate:.1f} jobs/s, ratio {ratio:.3f} (gateway "
        f"per-call median {lat_ms['median']:.1f} ms, p99 {lat_ms['p99']:.1f}); gateway CPU {gw_cpu:.2f} ms/job; "
        f"Redis {redis_total:.1f} commands/job, Redis server CPU {redis_cpu:.2f} ms/job")
    bench.raw["throughput"][tag] = {
        "direct_jobs_per_s": direct_rate, "gateway_jobs_per_s": gw_rate, "ratio": ratio,
        "gateway_call_ms": lat_ms, "rounds": rounds, "comfy_idle": idle, "gateway_cpu_ms_per_job": gw_cpu,
        "redis_commands_per_job": redis_total, "redis_server_cpu_ms_per_job": redis_cpu}
    round_ratios = [r["gateway"]["jobs_per_s"] / r["direct"]["jobs_per_s"] for r in rounds]
    low, high, how = ratio_spread(rounds)
    spread = verdict_within(low, high, lambda v: v >= THROUGHPUT_TARGET) is None if len(rounds) > 1 else False
    part = f"throughput-{store}"
    bench.add(
        Figure(part, f"direct pipelined (rounds beside gw{workers}, {clients} clients)", direct_rate, "jobs/s"),
        Figure(part, f"gateway, {clients} clients, GENERATION_WORKERS={workers}", gw_rate, "jobs/s"),
        Figure(part, f"ratio gateway/direct, {clients} clients, GENERATION_WORKERS={workers}", ratio, "x",
               f">= {THROUGHPUT_TARGET:.2f}", ratio >= THROUGHPUT_TARGET, unsure=spread,
               note="rounds " + ", ".join(f"{v:.3f}" for v in round_ratios)
               + (f"; {how} {low:.3f}-{high:.3f}" if how else "")),
        Figure(part, f"gateway CPU per job, {clients} clients, gw{workers}", gw_cpu, "ms"),
        Figure(part, f"Redis commands per job, {clients} clients, gw{workers}", redis_total, "",
               note="others' traffic" if store.startswith("memory") else ""),
        Figure(part, f"Redis server CPU per job, {clients} clients, gw{workers}", redis_cpu, "ms",
               note="others' traffic" if store.startswith("memory") else ""),
        Figure(part, f"ComfyUI idle during gateway run, {clients} clients, gw{workers}",
               100 * idle["gateway"], "%", note=f"direct {100 * idle['direct']:.1f}%"),
        noisy_if=f"throughput-{tag}-",
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
                  client=os.getpid()) as cpu, bench.load() as load, bench.redis_stats() as rstats:
        async with ComfyIdleProbe(bench.comfy_url or "") as probe:
            t0 = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), a.phase_timeout)
            elapsed = time.perf_counter() - t0
    bench.note_load(f"throughput-{tag}-gateway", load, quiet=True)
    return {"seconds": elapsed, "jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu.per_job_ms(n),
            "comfy_idle": probe.idle_fraction, "latencies": latencies, "jobs": n, "redis": rstats.per_job(n)}
