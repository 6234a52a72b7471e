"""Scale-out figures: throughput of gateway processes sharing Redis against fake ComfyUIs, and
the latency the Redis store adds over the memory store.

    .venv/bin/python bench/redis_scaleout.py              # about 1-2 minutes on 2 cores
    .venv/bin/python bench/redis_scaleout.py --jobs 400 --latency-jobs 300

Everything runs on 127.0.0.1: fake ComfyUIs (comfy_gateway/testing/fake_comfyui.py), gateways
started as `comfy-gateway serve` processes, and the Redis at REDIS_URL (default
redis://127.0.0.1:6379/0) under a key prefix of its own, deleted afterwards. Every process it
starts is stopped when it ends. Prints one table.

The workload is EmptyImage 8x8 -> FakeSlow(seconds) -> SaveImage: with --node-seconds 0 the fake
answers at once and the gateway's own costs dominate; with e.g. 0.05 the backends are the
bottleneck and two of them should double what one gives.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import Proc, start_fake_comfyui, start_gateway  # noqa: E402
from tests.support.redis import REDIS_URL, new_prefix  # noqa: E402


def workflow(seconds: float, i: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i % 0xFFFFFF}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "b"}},
    }


class Lab:
    def __init__(self, root: Path):
        self.root, self.procs, self.prefixes = root, [], []
        self._n = 0

    def _dir(self, kind: str) -> Path:
        self._n += 1
        return self.root / f"{kind}{self._n}"

    def fake(self) -> str:
        d = self._dir("fake")
        proc, url = start_fake_comfyui(d, d.with_suffix(".log"))
        self.procs.append(proc)
        return url

    def gateway(self, backends: list[str], cache: str, prefix: str, **env) -> str:
        d = self._dir("gw")
        d.mkdir()
        settings = {"COMFYUI_API_BASE": ",".join(backends), "OUTPUT_DIR": str(self.root / "outputs"),
                    "API_CACHE": cache, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
                    "API_LOG_LEVEL": "warning", "MAX_QUEUE_SIZE": "100000"}
        settings.update({k: str(v) for k, v in env.items()})
        proc, url = start_gateway(settings, d / "gateway.log", cwd=d)
        self.procs.append(proc)
        return url

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        import redis

        from comfy_gateway.jobs.redis_keys import RedisKeys  # where the gateway puts its keys

        r = redis.Redis.from_url(REDIS_URL)
        for prefix in self.prefixes:
            keys = list(r.scan_iter(match=RedisKeys(prefix).pattern, count=1000))
            for i in range(0, len(keys), 500):
                r.delete(*keys[i:i + 500])
        r.close()


async def run_jobs(urls: list[str], n: int, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """n sync jobs from `concurrency` clients spread over the gateways; (jobs/s, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency * 2)) as client:
        async def worker(k: int) -> None:
            for i in counter:
                url = urls[(k + i) % len(urls)]
                t = time.perf_counter()
                r = await client.post(url + "/generate/sync", json={"input": {"workflow_json": workflow(seconds, i)}})
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200 or r.json()["status"] != "completed":
                    raise RuntimeError(f"job failed: {r.status_code} {r.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return n / (time.perf_counter() - start), latencies


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=200, help="jobs per throughput run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--node-seconds", type=float, default=0.05, help="FakeSlow seconds per job")
    ap.add_argument("--latency-jobs", type=int, default=200)
    args = ap.parse_args()

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="redis-scaleout-") as tmp:
        lab = Lab(Path(tmp))
        try:
            f1, f2 = lab.fake(), lab.fake()

            # Latency: one process, one backend, serial jobs that the fake answers at once.
            for cache in ("memory", "redis"):
                prefix = new_prefix()
                lab.prefixes.append(prefix)
                gw = lab.gateway([f1], cache, prefix)
                await run_jobs([gw], 20, 1, 0.0)  # warm-up
                _, lat = await run_jobs([gw], args.latency_jobs, 1, 0.0)
                print(f"latency {cache} done", flush=True)
                rows.append((f"latency {cache}: median / p90 (ms)",
                             f"{statistics.median(lat) * 1000:.1f} / {pct(lat, 0.9) * 1000:.1f}"))
                lab.procs.pop().stop()
            med = {c: float(r.split(" / ")[0]) for (k, r) in rows for c in ("memory", "redis") if c in k}
            rows.append(("latency Redis adds at the median (ms)", f"{med['redis'] - med['memory']:.1f}"))

            # Throughput: backends are the bottleneck (node_seconds per prompt, one at a time each).
            configs = [("1 process, memory, 1 backend", "memory", 1, [f1]),
                       ("1 process, memory, 2 backends", "memory", 1, [f1, f2]),
                       ("1 process, redis, 2 backends", "redis", 1, [f1, f2]),
                       ("2 processes, redis, 2 backends", "redis", 2, [f1, f2])]
            for label, cache, processes, backends in configs:
                prefix = new_prefix()
                lab.prefixes.append(prefix)
                gws = [lab.gateway(backends, cache, prefix) for _ in range(processes)]
                await run_jobs(gws, 20, 4, args.node_seconds)  # warm-up
                rate, lat = await run_jobs(gws, args.jobs, args.concurrency, args.node_seconds)
                print(f"{label} done", flush=True)
                rows.append((f"throughput {label} (jobs/s)", f"{rate:.1f}  (median latency {statistics.median(lat):.2f} s)"))
                for _ in gws:
                    lab.procs.pop().stop()
        finally:
            lab.close()

    width = max(len(k) for k, _ in rows)
    print(f"\nFakeSlow {args.node_seconds}s per job, {args.jobs} jobs x {args.concurrency} clients; "
          f"latency over {args.latency_jobs} serial jobs\n")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    asyncio.run(main())
