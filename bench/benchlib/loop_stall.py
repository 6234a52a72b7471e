"""Part `loop-stall` (fake ComfyUI, each store): does a job with a big inline input stall the
gateway's event loop? (issue 11: no stall over 10 ms from encoding or decoding a job record.)

Each job is a 52-node workflow whose LoadImage names a `--stall-input-bytes` data: URI (a PNG of
its own per job), scaled down and passed through FakeSlow, which reports `--stall-steps`
progress frames. Two windows: the submissions (POST /generate until each is admitted: the
request body's JSON parse, the data: URI's decoding and storing as an asset), then the run of
the queued jobs (hand-overs, progress frames, uploads to the backend, outputs, every change of
the job record). The issue's target is on the second: a stall from encoding or decoding a job
record; the first is shown for what it is (parsing a 25 MB JSON body holds the loop, whoever
decodes it). Measured two ways in each:

* inside: the gateway's `comfy_gateway_event_loop_lag_seconds` histogram (sampled every 5 ms
  here), read from /metrics before and after: how many samples were late by more than 10 ms,
  and the bucket of the latest;
* outside: a thread of this process GETs /queue-info every `--stall-probe-ms` on a keep-alive
  connection; its latency over the idle baseline (median of 1.5 s before the jobs) shows what
  a client saw.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import orjson
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from benchlib.common import say
from benchlib.context import Bench
from benchlib.gateway_client import GatewayClient
from benchlib.stats import Figure, percentile
from benchlib.workloads import padded

LAG = "comfy_gateway_event_loop_lag_seconds"
STALL_TARGET = 0.010


def data_uri(nbytes: int, seed: int) -> str:
    """A data: URI of about `nbytes` characters: an uncompressed PNG of a colour of its own."""
    side = max(8, int((nbytes * 3 / 4 / 3) ** 0.5))
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (seed % 256, (seed * 7) % 256, 200)).save(buf, format="PNG", compress_level=0)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def workflow(uri: str, seconds: float, steps: int) -> dict[str, Any]:
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uri}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                     "width": 16, "height": 16, "crop": "disabled"}},
        "3": {"class_type": "FakeSlow", "inputs": {"images": ["2", 0], "seconds": seconds, "steps": steps}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "stall"}},
    }
    return padded(wf, 48)  # 52 nodes, like the README's example


class Probe:
    """GET `path` every `interval` s from a thread of its own (one keep-alive connection):
    latencies in seconds, unaffected by this process's event loop."""

    def __init__(self, url: str, path: str, interval: float):
        parts = urlsplit(url)
        self._host, self._port, self._path, self.interval = parts.hostname, parts.port, path, interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                conn.request("GET", self._path)
                conn.getresponse().read()
                self.latencies.append(time.perf_counter() - t)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._stop.wait(self.interval)
        conn.close()

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(35)


def lag_buckets(url: str) -> dict[float, float]:
    """{upper bound: cumulative count} of the gateway's loop-lag histogram."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{LAG}_bucket":
                out[float(s.labels["le"])] = s.value
    if not out:
        raise RuntimeError(f"the gateway exposes no {LAG}: a revision without the loop-lag sampler?")
    return out


async def loop_stall(bench: Bench) -> None:
    a = bench.args
    say(f"\n== loop-stall: {a.stall_jobs} jobs per store ({a.stall_concurrency} at once), each a 52-node workflow "
        f"with a {a.stall_input_bytes / 1e6:.0f} MB data: input and {a.stall_steps} progress frames over "
        f"{a.stall_node_seconds:g} s; stores {a.stores}")
    fake_url = bench.ensure_fake()
    uris = [data_uri(a.stall_input_bytes, i) for i in range(a.stall_jobs + 1)]
    bodies = [orjson.dumps({"input": {"workflow_json": workflow(u, a.stall_node_seconds, a.stall_steps)}})
              for u in uris]
    limit = str(max(32 << 20, 2 * a.stall_input_bytes))
    for store in a.stores:
        gw = bench.gateway(fake_url, workers=2, tag=f"stall-{store}", store=store,
                           env={"LOOP_LAG_INTERVAL": "0.005", "MAX_BODY_BYTES": limit, "MAX_INPUT_BYTES": limit})
        try:
            await _one_store(bench, gw.url, store, bodies)
        finally:
            bench.stop(gw)


async def _one_store(bench: Bench, url: str, store: str, bodies: list[bytes]) -> None:
    a = bench.args
    tag = f"loop-stall-{store}"
    async with GatewayClient(url, a.stall_concurrency + 2, a.job_timeout) as client:
        async def run(body: bytes) -> None:
            assert client.session is not None
            async with client.session.post(f"{url}/generate/sync?timeout={a.job_timeout:g}", data=body,
                                           headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
            if resp.status != 200 or orjson.loads(raw).get("status") != "completed":
                raise RuntimeError(f"/generate/sync: HTTP {resp.status}: {raw[:300]!r}")

        await run(bodies[-1])  # warm-up: every code path once, the idle baseline after it
        with Probe(url, "/queue-info", a.stall_probe_ms / 1000) as idle:
            await asyncio.sleep(1.5)
        baseline = percentile(idle.latencies, 50)
        gate = asyncio.Semaphore(a.stall_concurrency)
        ids: list[str] = []

        async def submit(body: bytes) -> None:
            async with gate:
                assert client.session is not None
                async with client.session.post(f"{url}/generate", data=body,
                                               headers={"Content-Type": "application/json"}) as resp:
                    raw = await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"/generate: HTTP {resp.status}: {raw[:300]!r}")
                ids.append(orjson.loads(raw)["id"])

        async def finished(job_id: str) -> None:
            assert client.session is not None
            while True:
                async with client.session.get(f"{url}/result/{job_id}") as resp:
                    status = orjson.loads(await resp.read()).get("status")
                if status == "completed":
                    return
                if status in ("failed", "cancelled", "timed_out"):
                    raise RuntimeError(f"job {job_id} ended {status}")
                await asyncio.sleep(0.2)

        t0 = time.perf_counter()
        with Probe(url, "/queue-info", a.stall_probe_ms / 1000) as sub_probe:
            before = lag_buckets(url)
            await asyncio.wait_for(asyncio.gather(*(submit(b) for b in bodies[:-1])), a.phase_timeout)
            middle = lag_buckets(url)
        with Probe(url, "/queue-info", a.stall_probe_ms / 1000) as probe, bench.load() as load:
            await asyncio.wait_for(asyncio.gather(*(finished(i) for i in ids)), a.phase_timeout)
            after = lag_buckets(url)
        elapsed = time.perf_counter() - t0
    bench.note_load(tag, load)
    submitting = _window(middle, before, sub_probe.latencies, baseline)
    res = {"jobs": len(bodies) - 1, "seconds": elapsed, **_window(after, middle, probe.latencies, baseline),
           "probe_baseline_ms": 1000 * baseline, "submitting": submitting}
    bench.raw.setdefault("loop_stall", {})[store] = res
    for name, w in (("submitting", submitting), ("running", res)):
        say(f"{tag}, {name}: loop lag: {int(w['lag_over_10ms'])} of {int(w['lag_samples'])} samples over 10 ms, "
            f"the latest in ({w['lag_max_bucket'][0]:g}, {w['lag_max_bucket'][1]:g}] s; /queue-info probe "
            f"(baseline {1000 * baseline:.1f} ms, {w['probe_n']} probes): max +{w['probe_max_extra_ms']:.1f} ms, "
            f"p99 +{w['probe_p99_extra_ms']:.1f} ms")
    low, worst = res["lag_max_bucket"]
    bench.add(
        Figure("loop-stall", f"{store}: running jobs, loop-lag samples over 10 ms", res["lag_over_10ms"], "",
               note=f"of {int(res['lag_samples'])}; latest in ({low:g}, {worst:g}] s"),
        Figure("loop-stall", f"{store}: running jobs, largest loop lag (bucket upper bound)", 1000 * worst, "ms",
               "<= 10 ms", worst <= STALL_TARGET),
        Figure("loop-stall", f"{store}: running jobs, /queue-info probe, max over baseline",
               res["probe_max_extra_ms"], "ms", note=f"p99 +{res['probe_p99_extra_ms']:.1f} ms"),
        Figure("loop-stall", f"{store}: submitting, largest loop lag (bucket upper bound)",
               1000 * submitting["lag_max_bucket"][1], "ms",
               note="the request body's JSON parse: send big inputs with POST /assets or by URL"),
        noisy_if=tag,
    )


def _window(after: dict[float, float], before: dict[float, float], latencies: list[float],
            baseline: float) -> dict[str, Any]:
    lag = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    samples = lag[float("inf")]
    worst = max((le for le in lag if lag[le] > lag_below(lag, le)), default=0.0)
    extra = [max(0.0, x - baseline) for x in latencies]
    return {"lag_samples": samples, "lag_over_10ms": samples - lag.get(STALL_TARGET, 0.0),
            "lag_max_bucket": [max((b for b in lag if b < worst), default=0.0), worst],
            "lag_buckets": {str(k): v for k, v in lag.items()}, "probe_n": len(extra),
            "probe_max_extra_ms": 1000 * max(extra, default=0.0),
            "probe_p99_extra_ms": 1000 * percentile(extra, 99)}


def lag_below(lag: dict[float, float], le: float) -> float:
    """Cumulative count of the bucket just under `le` (0 for the first)."""
    lower = [v for b, v in lag.items() if b < le]
    return max(lower, default=0.0)
