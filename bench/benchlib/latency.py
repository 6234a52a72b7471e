"""Part 1: per-job latency, direct ComfyUI client vs POST /generate/sync through the gateway."""

from __future__ import annotations

import shutil
import time
from typing import Any

from benchlib.context import Bench
from benchlib.direct import DirectComfy
from benchlib.gateway_client import GatewayClient
from benchlib.meters import CpuMeter
from benchlib.common import say
from benchlib.redis_store import describe
from benchlib.stats import Figure, bootstrap_interval, percentile, summary_ms, verdict_within
from benchlib.workloads import direct_workflow, empty_save


# -- 1. latency -----------------------------------------------------------------------
# Added median over the direct client, per store (issue 11's targets).
LATENCY_TARGET_MS = {"memory": 3.0, "redis": 5.0}  # by store ("redis@REV" counts as redis)


async def latency(bench: Bench) -> None:
    for store in bench.args.stores:
        await _latency(bench, store)


async def _latency(bench: Bench, store: str) -> None:
    a = bench.args
    say(f"\n== 1. latency, {store} store: {a.n_latency} serial jobs each, after {a.warmup} warm-up "
        f"(EmptyImage {a.image_size}x{a.image_size} -> SaveImage, order: {a.order})")
    comfy_url = bench.ensure_comfyui()
    gw = bench.gateway(comfy_url, workers=a.latency_workers, tag=f"latency-{store}", store=store)
    part = f"latency-{store}"
    direct_out = bench.newdir("direct-out")
    d_times: list[float] = []
    g_times: list[float] = []
    d_steps: list[dict[str, float]] = []
    g_durations: list[dict[str, Any]] = []
    try:
        async with DirectComfy(comfy_url, direct_out) as direct, GatewayClient(gw.url, 4, a.job_timeout) as client:

            async def one_direct(record: bool) -> None:
                wf = direct_workflow(a.image_size)
                t0 = time.perf_counter()
                pid, fut = await direct.post(wf)
                t1 = time.perf_counter()
                steps = {"post": t1 - t0}
                await direct.finish(pid, fut, steps)
                t2 = time.perf_counter()
                if record:
                    d_times.append(t2 - t0)
                    d_steps.append(steps)

            async def one_gateway(record: bool) -> None:
                wf = empty_save("bench", a.image_size)
                t0 = time.perf_counter()
                body = await client.sync(wf)
                t1 = time.perf_counter()
                if record:
                    g_times.append(t1 - t0)
                    g_durations.append(body.get("durations") or {})

            for _ in range(a.warmup):
                await one_direct(False)
                await one_gateway(False)
            deadline = time.monotonic() + a.phase_timeout
            cpu = CpuMeter(gateway=gw.pid)
            cpu.__enter__()
            load = bench.load()
            load.__enter__()
            rstats = bench.redis_stats()
            rstats.__enter__()
            if a.order == "interleaved":
                for i in range(a.n_latency):
                    # alternate which side goes first, so neither always follows the other
                    first, second = (one_direct, one_gateway) if i % 2 == 0 else (one_gateway, one_direct)
                    await first(True)
                    await second(True)
                    _check_deadline(deadline, "latency")
            else:
                for _ in range(a.n_latency):
                    await one_direct(True)
                    _check_deadline(deadline, "latency")
                for _ in range(a.n_latency):
                    await one_gateway(True)
                    _check_deadline(deadline, "latency")
            cpu.__exit__()
            load.__exit__()
            rstats.__exit__()
            bench.note_load(part, load)
    finally:
        bench.stop(gw)
        shutil.rmtree(direct_out, ignore_errors=True)
    d, g = summary_ms(d_times), summary_ms(g_times)
    diff = g["median"] - d["median"]
    # interleaved: each gateway job next to a direct one; the median of the pairs' differences
    # resists load that comes and goes better than the difference of the medians
    paired = percentile([(gt - dt) * 1000 for gt, dt in zip(g_times, d_times)], 50)
    # How far the difference of medians moves over resamples of the pairs: a target inside that
    # interval is too close to call from this run (NOISY), whichever side the median fell on.
    g_ms, d_ms = [t * 1000 for t in g_times], [t * 1000 for t in d_times]
    low, high = bootstrap_interval(lambda idx: percentile([g_ms[i] for i in idx], 50)
                                   - percentile([d_ms[i] for i in idx], 50), min(len(g_ms), len(d_ms)))
    # Where the gateway's time goes, from the durations of its own result objects.
    breakdown = {}
    for key in ("queue_wait", "preprocess", "generation_wait", "generation", "postprocess_wait",
                "postprocess", "total"):
        vals = [x[key] for x in g_durations if x.get(key) is not None]
        breakdown[key] = percentile(vals, 50) * 1000 if vals else None
    outside = [gt - (x.get("total") or 0) for gt, x in zip(g_times, g_durations) if x.get("total")]
    breakdown["http_outside_job"] = percentile(outside, 50) * 1000 if outside else None
    say(f"direct : median {d['median']:.2f} ms  p90 {d['p90']:.2f}  p99 {d['p99']:.2f}  "
        f"(min {d['min']:.2f}, max {d['max']:.2f})")
    say(f"gateway: median {g['median']:.2f} ms  p90 {g['p90']:.2f}  p99 {g['p99']:.2f}  "
        f"(min {g['min']:.2f}, max {g['max']:.2f})")
    say(f"gateway adds {diff:+.2f} ms at the median (95% bootstrap interval {low:+.2f} to {high:+.2f}; "
        f"median of paired differences {paired:+.2f} ms)")
    say("gateway job breakdown (medians, ms): " + ", ".join(
        f"{k} {v:.2f}" for k, v in breakdown.items() if v is not None))
    direct_steps = {k: percentile([x[k] for x in d_steps], 50) * 1000 for k in ("post", "wait", "history", "view")}
    say("direct steps (medians, ms): " + ", ".join(f"{k} {v:.2f}" for k, v in direct_steps.items()))
    gw_cpu = cpu.per_job_ms(max(len(g_times), 1)).get("gateway")
    say(f"gateway CPU per job: {gw_cpu} ms")
    redis_cmds = rstats.per_job(len(g_times))
    say(f"Redis ({'others only: this gateway does not use it' if store.startswith('memory') else 'this gateway and others'}): "
        f"{describe(redis_cmds)}")
    bench.raw[part] = {"direct_ms": d, "gateway_ms": g, "median_diff_ms": diff, "median_diff_interval_ms": [low, high],
                       "paired_median_diff_ms": paired,
                       "gateway_breakdown_ms": breakdown, "gateway_cpu_ms_per_job": gw_cpu,
                       "direct_steps_ms": direct_steps, "redis_commands_per_job": redis_cmds}
    target = LATENCY_TARGET_MS[store.partition("@")[0]]
    bench.add(
        Figure(part, "direct median", d["median"], "ms"),
        Figure(part, "direct p90", d["p90"], "ms"),
        Figure(part, "direct p99", d["p99"], "ms"),
        Figure(part, "gateway median", g["median"], "ms"),
        Figure(part, "gateway p90", g["p90"], "ms"),
        Figure(part, "gateway p99", g["p99"], "ms"),
        Figure(part, "gateway - direct, median", diff, "ms", f"<= {target:g} ms", diff <= target,
               note=f"95% interval {low:+.2f} to {high:+.2f}",
               unsure=verdict_within(low, high, lambda v: v <= target) is None),
        Figure(part, "median of paired differences", paired, "ms"),
        Figure(part, "gateway CPU per job", gw_cpu, "ms"),
        Figure(part, "Redis commands per job", redis_cmds["total"], "",
               note="others' traffic" if store.startswith("memory") else f"{redis_cmds['scripts']} script calls"),
        Figure(part, "Redis server CPU per job", redis_cmds["cpu_ms"], "ms",
               note="others' traffic" if store.startswith("memory") else ""),
        noisy_if=part,
    )


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what}: over --phase-timeout")
