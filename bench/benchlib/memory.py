"""Part 3 (fake ComfyUI): the gateway's memory with many queued jobs (mem-queue) and with one
big output (mem-big)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from pathlib import Path
from typing import Any

from benchlib.common import MB, say
from benchlib.context import Bench
from benchlib.gateway_client import GatewayClient
from benchlib.meters import RssSampler, rss
from benchlib.procs import Managed, http_post_json
from benchlib.stats import Figure, percentile
from benchlib.workloads import big_output, empty_save, padded


# -- 3a. memory with 10,000 queued jobs -------------------------------------------------
async def mem_queue(bench: Bench) -> None:
    a = bench.args
    say(f"\n== 3a. memory: {a.mem_jobs} jobs queued behind a hung (fake) ComfyUI"
        + (f" (workflows padded with {a.mem_pad_nodes} extra nodes)" if a.mem_pad_nodes else ""))
    fake_url = bench.ensure_fake()
    control(fake_url, {"hang": False})
    gw = bench.gateway(fake_url, workers=2, max_queue=max(a.max_queue_size, 2 * a.mem_jobs), tag="memqueue")
    try:
        async with GatewayClient(gw.url, a.submit_concurrency + 4, a.job_timeout) as client:
            for _ in range(10):  # warm every code path before the baseline
                await client.sync(empty_save("warm", 64))
            await asyncio.sleep(0.5)
            before = rss(gw.pid)
            control(fake_url, {"hang": True})
            t0 = time.perf_counter()
            with RssSampler(gw.pid, a.sample_ms / 1000) as sampler, bench.load() as load:
                counter = itertools.count()
                ids: list[str] = []

                async def submitter() -> None:
                    while next(counter) < a.mem_jobs:
                        ids.append(await client.submit(padded(empty_save("q", 64), a.mem_pad_nodes)))

                await asyncio.wait_for(asyncio.gather(*(submitter() for _ in range(a.submit_concurrency))),
                                       a.phase_timeout)
                submit_s = time.perf_counter() - t0
                await asyncio.sleep(1.0)
                info = await client.queue_info()
            after = rss(gw.pid)
            bench.note_load("mem-queue", load)
            waiting = info.get("waiting")
            in_flight = sum(b.get("in_flight", 0) for b in info.get("backends", []))
            growth = after - before
            say(f"submitted {len(ids)} in {submit_s:.1f}s ({len(ids) / submit_s:.0f}/s); gateway says "
                f"{waiting} waiting + {in_flight} in flight at the backend")
            say(f"gateway RSS: before {before / MB:.1f} MB, after {after / MB:.1f} MB "
                f"(+{growth / MB:.1f} MB, {growth / max(len(ids), 1) / 1024:.2f} KiB/job), "
                f"peak while submitting {sampler.peak / MB:.1f} MB")
            drain: dict[str, Any] = {}
            control(fake_url, {"hang": False})
            if a.drain:
                drain = await _drain(bench, client, gw.pid, len(ids))
            bench.raw["mem_queue"] = {
                "jobs": len(ids), "rss_before": before, "rss_after": after, "rss_peak": sampler.peak,
                "submit_s": submit_s, "waiting": waiting, "in_flight": in_flight, "drain": drain}
            bench.add(
                Figure("memory", "gateway RSS before", before / MB, "MB"),
                Figure("memory", f"gateway RSS with {len(ids)} jobs queued", after / MB, "MB", "< 200 MB",
                       after < 200 * MB),
                Figure("memory", "RSS growth per queued job", growth / max(len(ids), 1) / 1024, "KiB"),
            )
            if drain.get("drained"):
                kept = (drain["rss_after"] - before) / max(len(ids), 1) / 1024
                bench.add(
                    Figure("memory", "drain rate after un-hang (fake)", drain["jobs_per_s"], "jobs/s"),
                    Figure("memory", "gateway RSS once they all completed", drain["rss_after"] / MB, "MB"),
                    Figure("memory", "RSS kept per completed job", kept, "KiB"),
                    )
    finally:
        control(fake_url, {"hang": False})
        bench.stop(gw)

async def _drain(bench: Bench, client: GatewayClient, pid: int, jobs: int) -> dict[str, Any]:
    a = bench.args
    t0 = time.perf_counter()
    deadline = time.monotonic() + a.drain_timeout
    while time.monotonic() < deadline:
        info = await client.queue_info()
        busy = sum(s.get("busy", 0) for s in info["queues"].values())
        if info["waiting"] == 0 and busy == 0:
            elapsed = time.perf_counter() - t0
            out = {"drained": True, "seconds": elapsed, "jobs_per_s": jobs / elapsed, "rss_after": rss(pid)}
            say(f"drained {jobs} jobs in {elapsed:.1f}s ({jobs / elapsed:.0f} jobs/s); "
                f"RSS then {out['rss_after'] / MB:.1f} MB")
            return out
        await asyncio.sleep(0.25)
    info = await client.queue_info()
    say(f"not drained after {a.drain_timeout:.0f}s ({info['waiting']} still waiting): going on")
    return {"drained": False, "waiting": info["waiting"]}

# -- 3b. memory with one 1 GB output ----------------------------------------------------
async def mem_big(bench: Bench) -> None:
    a = bench.args
    say(f"\n== 3b. memory: one job whose output is {a.big_bytes / (1 << 30):.2f} GiB (fake FakeBigOutput)")
    fake_url = bench.ensure_fake()
    control(fake_url, {"hang": False})
    gw = bench.gateway(fake_url, workers=2, tag="membig")
    try:
        async with GatewayClient(gw.url, 4, a.job_timeout) as client:
            for _ in range(3):  # warm the same code path with a 1 MiB output
                body = await client.sync(big_output(1 << 20, "warm"))
                _delete_outputs(body, bench.fake)
            await asyncio.sleep(0.5)
            with RssSampler(gw.pid, a.sample_ms / 1000) as base:
                await asyncio.sleep(1.0)
            baseline = int(percentile([r for _, r in base.samples], 50))
            t0 = time.perf_counter()
            with RssSampler(gw.pid, a.sample_ms / 1000) as sampler, bench.load() as load:
                body = await client.sync(big_output(a.big_bytes))
            elapsed = time.perf_counter() - t0
        bench.note_load("mem-big", load)
        size = sum(f.get("size_bytes") or 0 for f in body["output"])
        if size != a.big_bytes:
            raise RuntimeError(f"expected an output of {a.big_bytes} bytes, the gateway stored {size}")
        peak = sampler.peak
        growth = peak - baseline
        dur = body.get("durations") or {}
        say(f"{size / (1 << 20):.0f} MiB in {elapsed:.1f}s (postprocess {dur.get('postprocess') or 0:.1f}s, "
            f"{size / MB / max(dur.get('postprocess') or elapsed, 1e-9):.0f} MB/s); RSS baseline "
            f"{baseline / MB:.1f} MB, peak {peak / MB:.1f} MB, growth {growth / MB:.1f} MB "
            f"over {len(sampler.samples)} samples every {a.sample_ms:g} ms")
        bench.raw["mem_big"] = {"bytes": size, "seconds": elapsed, "rss_baseline": baseline, "rss_peak": peak,
                               "samples": len(sampler.samples), "durations": dur,
                               "rss_series_mb": [round(r / MB, 2) for _, r in sampler.samples]}
        bench.add(
            Figure("memory", f"big output: {size / (1 << 30):.2f} GiB in", elapsed, "s"),
            Figure("memory", "big output: peak RSS growth", growth / MB, "MB", "< 50 MB", growth < 50 * MB),
        )
        _delete_outputs(body, bench.fake)
    finally:
        bench.stop(gw)



def control(fake_url: str, knobs: dict[str, Any]) -> None:
    status, body = http_post_json(fake_url + "/fake/control", knobs)
    if status != 200:
        raise RuntimeError(f"POST /fake/control {knobs}: HTTP {status}: {body[:300]!r}")


def _delete_outputs(body: dict[str, Any], fake: Managed | None) -> None:
    """Delete a job's stored outputs and the fake ComfyUI's copies of them."""
    for f in body.get("output") or []:
        if f.get("local_path"):
            Path(f["local_path"]).unlink(missing_ok=True)
    if fake is not None:
        job_dir = Path(fake.info["base_dir"]) / "output" / body["id"]
        shutil.rmtree(job_dir, ignore_errors=True)
        # whatever layout the fake uses: any file of this job's under its base dir
        for p in Path(fake.info["base_dir"]).rglob(f"*{body['id']}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
