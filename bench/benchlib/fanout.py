"""Part 4 (fake ComfyUI): many followers. N clients follow a few jobs over
`GET /result/{id}/stream` (one connection each) while the jobs run one after another; a probe
in a process of its own asks `/queue-info` every 250 ms and records how late each answer is.
Issue 11's target: no answer delayed more than 250 ms while the results fan out, in both stores.

The probe runs in its own process so the followers' reading (one event loop parsing thousands
of streams) cannot delay it: what it measures is the gateway's delay.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from typing import Any

import aiohttp

from benchlib.common import MB, say
from benchlib.context import Bench
from benchlib.gateway_client import GatewayClient
from benchlib.memory import control
from benchlib.meters import rss
from benchlib.stats import Figure, percentile

PROBE_EVERY = 0.25
DELAY_TARGET_MS = 250.0


def slow_job(seconds: float, n: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": n}},
        "2": {"class_type": "FakeSlow", "inputs": {"seconds": seconds, "steps": 4, "images": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "fanout"}},
    }


def raise_open_files(needed: int) -> int:
    """Raise the soft open-file limit (inherited by the gateway this process starts) to fit
    `needed` sockets, up to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


async def fanout(bench: Bench) -> None:
    a = bench.args
    per_job = max(a.fanout_followers // a.fanout_jobs, 1)
    n = per_job * a.fanout_jobs
    limit = raise_open_files(2 * n + 512)  # both ends of every connection live on this machine
    say(f"\n== 4. many followers: {n} followers over {a.fanout_jobs} jobs ({per_job} a job) of "
        f"{a.fanout_seconds:g} s each (FakeSlow, GENERATION_WORKERS=1); stores {a.stores}; "
        f"open-file limit {limit}")
    if limit < 2 * n + 64:
        say(f"!! the open-file limit {limit} is too low for {n} followers: some connections may fail")
    fake_url = bench.ensure_fake()
    bench.raw["fanout"] = {}
    for store in a.stores:
        control(fake_url, {"hang": False})
        gw = bench.gateway(fake_url, workers=1, tag=f"fanout-{store}", store=store)
        try:
            await _one_store(bench, gw.url, gw.pid, store, per_job)
        finally:
            control(fake_url, {"hang": False})
            bench.stop(gw)


async def _one_store(bench: Bench, url: str, pid: int, store: str, per_job: int) -> None:
    a = bench.args
    async with GatewayClient(url, 8, a.job_timeout) as client:
        await client.submit(slow_job(0.0, 0))  # warm every code path once
        await asyncio.sleep(1.0)
        control(bench.fake.url, {"hang": True})  # jobs wait: every follower is in before the first ends
        ids = [await client.submit(slow_job(a.fanout_seconds, i + 1)) for i in range(a.fanout_jobs)]
    before = rss(pid)
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=a.job_timeout)
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        first = [asyncio.get_running_loop().create_future() for _ in range(per_job * len(ids))]
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(_follow(session, f"{url}/result/{job_id}/stream", first[i * per_job + k]))
                 for i, job_id in enumerate(ids) for k in range(per_job)]
        await asyncio.wait_for(asyncio.gather(*first, return_exceptions=True), a.phase_timeout)
        connect_s = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        connected = rss(pid)
        per_follower = (connected - before) / len(tasks)
        say(f"{store}: {len(tasks)} followers connected in {connect_s:.1f}s; gateway RSS {before / MB:.1f} -> "
            f"{connected / MB:.1f} MB ({per_follower / 1024:.1f} KiB a follower)")
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        probe = ctx.Process(target=probe_main, args=(url, stop, out), daemon=True)
        probe.start()
        await asyncio.sleep(1.0)  # a few quiet probes first: the baseline
        t1 = time.perf_counter()
        with bench.load() as load:
            control(bench.fake.url, {"hang": False})
            done, pending = await asyncio.wait(tasks, timeout=a.phase_timeout)
        run_s = time.perf_counter() - t1
        stop.set()
        delays: list[tuple[float, float]] = out.get(timeout=30)
        probe.join(10)
        for t in pending:
            t.cancel()
        for t in done:
            results.append(t.result() if not t.exception() else {"final": False, "error": repr(t.exception())})
    bench.note_load(f"fanout-{store}", load)
    finals = sum(1 for r in results if r.get("final"))
    errors = [r["error"] for r in results if r.get("error")][:3]
    queue_events = sum(r.get("queue", 0) for r in results)
    ms = [d * 1000 for _, d in delays]
    worst, p99 = (max(ms), percentile(ms, 99)) if ms else (float("nan"), float("nan"))
    say(f"{store}: {finals}/{len(tasks)} followers got final_result in {run_s:.1f}s "
        f"({queue_events} queue events in all){'; errors e.g. ' + '; '.join(errors) if errors else ''}")
    say(f"{store}: /queue-info probe, {len(ms)} answers: median {percentile(ms, 50):.0f} ms, "
        f"p99 {p99:.0f} ms, max {worst:.0f} ms (target <= {DELAY_TARGET_MS:.0f} ms)")
    bench.raw["fanout"][store] = {
        "followers": len(tasks), "final": finals, "connect_s": connect_s, "run_s": run_s,
        "rss_before": before, "rss_connected": connected, "queue_events": queue_events,
        "probe_ms": [(round(t, 3), round(d * 1000, 1)) for t, d in delays], "errors": errors}
    part = f"fanout-{store}"
    bench.add(
        Figure(part, f"followers that got final_result, of {len(tasks)}", finals, "",
               f"= {len(tasks)}", finals == len(tasks)),
        Figure(part, "/queue-info delay while results fan out, max", worst, "ms",
               f"<= {DELAY_TARGET_MS:.0f} ms", worst <= DELAY_TARGET_MS),
        Figure(part, "/queue-info delay while results fan out, p99", p99, "ms",
               f"<= {DELAY_TARGET_MS:.0f} ms", p99 <= DELAY_TARGET_MS),
        Figure(part, "gateway memory per follower", per_follower / 1024, "KiB"),
        noisy_if=part,
    )


async def _follow(session: aiohttp.ClientSession, url: str, first: asyncio.Future) -> dict[str, Any]:
    """Read one stream to its final_result; `first` is set at the first event (connected)."""
    out: dict[str, Any] = {"final": False, "queue": 0}
    try:
        async with session.get(url, headers={"Accept": "text/event-stream"}) as resp:
            if resp.status != 200:
                out["error"] = f"HTTP {resp.status}"
                return out
            async for raw in resp.content:
                line = raw.rstrip(b"\r\n")
                if not line.startswith(b"event:"):
                    continue
                if not first.done():
                    first.set_result(None)
                name = line[6:].strip()
                if name == b"queue":
                    out["queue"] += 1
                elif name == b"final_result":
                    out["final"] = True
                    return out
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        out["error"] = repr(exc)
    finally:
        if not first.done():
            first.set_result(None)
    return out


def probe_main(url: str, stop: Any, out: Any) -> None:
    """In a process of its own: GET /queue-info every PROBE_EVERY seconds until `stop`; put
    [(seconds since start, how long the answer took)] on `out`. A probe that takes longer than
    the interval delays the next one (the next starts at once): a stall shows as its length."""
    import httpx

    delays: list[tuple[float, float]] = []
    with httpx.Client(timeout=60) as http:
        start = time.monotonic()
        next_at = start
        while not stop.is_set():
            t = time.monotonic()
            try:
                http.get(url + "/queue-info").raise_for_status()
            except httpx.HTTPError:
                pass
            delays.append((t - start, time.monotonic() - t))
            next_at += PROBE_EVERY
            time.sleep(max(0.0, next_at - time.monotonic()))
    out.put(delays)
