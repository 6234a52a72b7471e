#!/usr/bin/env python3
"""Benchmark of comfy_gateway against a direct ComfyUI client: latency, throughput, memory.

    python bench/bench_gateway.py                 # everything, default sizes (~4-5 min, 2 cores)
    python bench/bench_gateway.py --quick         # scaled down (~1 min)
    python bench/bench_gateway.py --parts latency,throughput --n-latency 500 --json out.json

See bench/README.md for what each figure means. Every process this script starts (ComfyUI,
the fake ComfyUI, gateways) is stopped when it ends, fails or is interrupted; all traffic
stays on 127.0.0.1; temp folders are removed unless --keep-temp.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def _ensure_venv() -> None:
    """The benchmark needs the project's venv (aiohttp, psutil, orjson): re-run under it if need be."""
    import importlib.util

    if all(importlib.util.find_spec(m) for m in ("aiohttp", "orjson", "psutil")):
        return
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists() and not os.environ.get("CG_BENCH_REEXEC"):
        os.environ["CG_BENCH_REEXEC"] = "1"
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit("bench_gateway.py needs aiohttp, orjson and psutil: run it with the project's .venv/bin/python")


_ensure_venv()

import argparse
import asyncio
import itertools
import json
import platform
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.direct import DirectComfy  # noqa: E402
from benchlib.procs import (  # noqa: E402
    REPO as SRC_DEFAULT, Managed, ProcessManager, fake_available, http_post_json, imported_from, install_comfyui,
    snapshot_source, start_fake_comfyui, start_gateway, start_real_comfyui,
)
from benchlib.profiling import LoadMeter, format_summary, summarize_collapsed  # noqa: E402
from benchlib.stats import Figure, parse_size, percentile, summary_ms, table  # noqa: E402

PARTS = ("latency", "throughput", "mem-queue", "mem-big")
MB = 1_000_000  # targets are in decimal megabytes (stricter than MiB)


def say(msg: str = "") -> None:
    print(msg, flush=True)


# -- workloads -------------------------------------------------------------------------------
_colors = itertools.count(random.randrange(0, 0xFFFFFF))


def next_color() -> int:
    """A colour no earlier prompt of this run used, so ComfyUI never answers from its cache."""
    return next(_colors) % 0x1000000


def empty_save(prefix: str, size: int = 512) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": size, "height": size, "batch_size": 1, "color": next_color()}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def direct_workflow(size: int) -> dict[str, Any]:
    # The gateway turns the prefix "bench" into "<job id>/bench": one new subfolder per job.
    # The direct client does the same, so ComfyUI does identical work for both (SaveImage lists
    # the target folder to number its files: one shared folder would slow down as it fills).
    return empty_save(f"{uuid.uuid4()}/bench", size)


def gateway_body(workflow: dict[str, Any]) -> bytes:
    return orjson.dumps({"input": {"workflow_json": workflow}})


def padded(workflow: dict[str, Any], extra_nodes: int) -> dict[str, Any]:
    """The workflow plus N unconnected EmptyImage nodes (ComfyUI runs only what leads to an
    output): a bigger request, as real workflows are, for the same work."""
    for i in range(extra_nodes):
        workflow[f"pad{i}"] = {"class_type": "EmptyImage",
                               "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i}}
    return workflow


def big_output(nbytes: int, prefix: str = "big") -> dict[str, Any]:
    return {"1": {"class_type": "FakeBigOutput",
                  "inputs": {"bytes": nbytes, "filename_prefix": prefix, "output_key": "gifs"}}}


# -- the gateway's HTTP client ---------------------------------------------------------------
class GatewayClient:
    def __init__(self, url: str, connections: int = 32, timeout: float = 300.0):
        self.url = url
        self.timeout = timeout
        self._connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "GatewayClient":
        # uvicorn closes idle keep-alive connections after 5 s (its default, which the gateway
        # keeps); aiohttp would reuse them for 15 s and a POST on a closing socket fails
        # ("Can not write request body"). Give up idle connections first.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections,
                                           keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.session:
            await self.session.close()

    async def sync(self, workflow: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.post(f"{self.url}/generate/sync?timeout={self.timeout:g}",
                                     data=gateway_body(workflow),
                                     headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
        body = orjson.loads(raw)
        if resp.status != 200 or body.get("status") != "completed" or not body.get("output"):
            raise RuntimeError(f"/generate/sync: HTTP {resp.status}: {raw[:500]!r}")
        return body

    async def submit(self, workflow: dict[str, Any]) -> str:
        assert self.session is not None
        async with self.session.post(f"{self.url}/generate", data=gateway_body(workflow),
                                     headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
        if resp.status != 202:
            raise RuntimeError(f"/generate: HTTP {resp.status}: {raw[:500]!r}")
        return orjson.loads(raw)["id"]

    async def queue_info(self) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.get(f"{self.url}/queue-info") as resp:
            return orjson.loads(await resp.read())


# -- is ComfyUI kept busy? --------------------------------------------------------------------
class ComfyIdleProbe:
    """Polls ComfyUI's GET /queue every `interval` s and counts the polls that find nothing
    running: how often ComfyUI waited for work (a pipelining stall) during a measurement."""

    def __init__(self, comfy_url: str, interval: float = 0.02):
        self.url = comfy_url + "/queue"
        self.interval = interval
        self.polls = 0
        self.idle = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.url) as resp:
                        q = orjson.loads(await resp.read())
                    self.polls += 1
                    if not q.get("queue_running"):
                        self.idle += 1
                except (aiohttp.ClientError, ValueError):
                    pass
                await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "ComfyIdleProbe":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def idle_fraction(self) -> float:
        return self.idle / self.polls if self.polls else float("nan")


# -- RSS sampling ----------------------------------------------------------------------------
class RssSampler:
    """Samples a process's resident set size every `interval` seconds from its own thread, so
    a busy event loop in this process does not delay the samples."""

    def __init__(self, pid: int, interval: float):
        self._proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._proc.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max((r for _, r in self.samples), default=0)


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


class CpuMeter:
    """CPU seconds (user + system) that some processes spend over a `with` block."""

    def __init__(self, **pids: int | None):
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid}
        self.used: dict[str, float] = {}

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def __enter__(self) -> "CpuMeter":
        self._start = {n: self._cpu(p) for n, p in self._procs.items()}
        return self

    def __exit__(self, *exc: Any) -> None:
        for n, p in self._procs.items():
            try:
                self.used[n] = self._cpu(p) - self._start[n]
            except psutil.Error:
                pass

    def per_job_ms(self, jobs: int) -> dict[str, float]:
        return {n: round(v / jobs * 1000, 3) for n, v in self.used.items()}


# -- the run ---------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    pm: ProcessManager
    tmp: Path
    python: str
    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    comfy: Managed | None = None
    comfy_url: str | None = None
    fake: Managed | None = None
    noisy: list[str] = field(default_factory=list)
    src: Path = SRC_DEFAULT  # where the gateway's (and the fake's) code is imported from

    def add(self, *figs: Figure, noisy_if: str | None = None) -> None:
        """Add figures; those measured in a part (a prefix of note_load's labels) that was
        noisy get flagged."""
        noisy = noisy_if is not None and any(p.startswith(noisy_if) for p in self.noisy)
        for f in figs:
            f.noisy = noisy
        self.figures.extend(figs)

    def newdir(self, name: str) -> Path:
        d = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}"
        d.mkdir(parents=True)
        return d

    # -- processes ------------------------------------------------------------------------
    def ensure_comfyui(self) -> str:
        if self.comfy_url:
            return self.comfy_url
        if self.args.comfyui_url:
            self.comfy_url = self.args.comfyui_url.rstrip("/")
            say(f"using the ComfyUI at {self.comfy_url}")
            return self.comfy_url
        say("installing/checking ComfyUI (scripts/install_comfyui.sh) ...")
        install_comfyui(self.args.install_timeout)
        t0 = time.monotonic()
        self.comfy = start_real_comfyui(self.pm, self.newdir("comfyui-base"), self.args.start_timeout)
        self.comfy_url = self.comfy.url
        say(f"ComfyUI {self.comfy.info.get('comfyui_version')} ready at {self.comfy_url} "
            f"(pid {self.comfy.pid}, {time.monotonic() - t0:.1f}s)")
        self.raw["comfyui"] = {"url": self.comfy_url, **self.comfy.info}
        return self.comfy_url

    def ensure_fake(self) -> str:
        if self.fake is not None:
            return self.fake.url
        deadline = time.monotonic() + self.args.wait_fake
        while not fake_available(self.python, self.src):
            if time.monotonic() > deadline:
                raise RuntimeError("comfy_gateway.testing.fake_comfyui is not there (yet): memory parts need it")
            say("waiting for comfy_gateway/testing/fake_comfyui.py to appear ...")
            time.sleep(min(30, max(1, deadline - time.monotonic())))
        self.fake = start_fake_comfyui(self.pm, self.python, self.newdir("fake-base"), self.args.start_timeout,
                                       src=self.src)
        say(f"fake ComfyUI ready at {self.fake.url} (pid {self.fake.pid})")
        return self.fake.url

    def gateway(self, comfy_url: str, *, workers: int, max_queue: int | None = None, tag: str = "") -> Managed:
        profile_to = None
        if self.args.cprofile:
            self.args.profile_dir = self.args.profile_dir or self.tmp / "profiles"
            self.args.profile_dir.mkdir(parents=True, exist_ok=True)
            profile_to = self.args.profile_dir / f"gateway-{tag or 'run'}-gw{workers}.prof"
        t0 = time.monotonic()
        gw = start_gateway(
            self.pm, self.python, comfy_url=comfy_url, output_dir=self.newdir("gateway-out"),
            workdir=self.newdir("gateway-cwd"), generation_workers=workers,
            max_queue_size=max_queue or self.args.max_queue_size, log_level=self.args.gateway_log_level,
            timeout=self.args.start_timeout, profile_to=profile_to, src=self.src)
        gw.info["profile"] = str(profile_to) if profile_to else None
        say(f"gateway (GENERATION_WORKERS={workers}) ready at {gw.url} (pid {gw.pid}, "
            f"{time.monotonic() - t0:.1f}s)")
        if self.args.py_spy:
            self.args.profile_dir = self.args.profile_dir or self.tmp / "profiles"
            self.args.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.args.profile_dir / f"py-spy-{tag or 'run'}-gw{workers}-{gw.pid}.txt"
            # --nonblocking: do not pause the gateway at each sample (less distortion, rare torn stacks)
            # --gil: only samples where the gateway runs Python (holds the GIL); uvloop releases it
            # while it waits in epoll, which py-spy's idle detection alone does not always see.
            spy = self.pm.spawn("py-spy", [self.args.py_spy, "record", "-p", str(gw.pid), "-r", "100",
                                           "--nonblocking", "--gil", "--format", "raw", "-o", str(out)], url="")
            spy.stop_signal = signal.SIGINT  # py-spy writes its file on SIGINT
            gw.info["py_spy"] = spy
            gw.info["py_spy_out"] = out
            time.sleep(0.5)  # let it attach
        return gw

    def stop(self, proc: Managed) -> None:
        spy = proc.info.pop("py_spy", None)
        if spy is not None:
            self.pm.stop(spy, grace=20)
            out = proc.info.get("py_spy_out")
            if out and Path(out).exists():
                summary = summarize_collapsed(Path(out), self.args.profile_top)
                say(f"\n-- py-spy of gateway pid {proc.pid} ({out}):")
                say(format_summary(summary, self.args.profile_top))
                self.raw.setdefault("py_spy", {})[Path(out).name] = summary
        self.pm.stop(proc)
        prof = proc.info.get("profile")
        if prof and Path(prof).exists():
            _print_profile(Path(prof), self.args.profile_top)

    def load(self) -> LoadMeter:
        return LoadMeter([os.getpid(), *self.pm.pids()])

    def note_load(self, part: str, meter: LoadMeter, quiet: bool = False) -> None:
        """Record what other processes took from the CPU meanwhile; warn past 0.2 cores."""
        self.raw.setdefault("background_load", {})[part] = {
            "other_cores": round(meter.other_cores, 3), "steal_cores": round(meter.steal_cores, 3),
            "kernel_threads_cores": round(meter.kernel_cores, 3), "ours_cores": round(meter.ours_cores, 3),
            "top_others": meter.top_others}
        msg = (f"[{part}: our processes used {meter.ours_cores:.2f} cores; other processes "
               f"{meter.other_cores:.2f}; kernel threads {meter.kernel_cores:.2f}; VM steal {meter.steal_cores:.2f}]")
        if meter.top_others and meter.other_cores > self.args.noise_cores:
            msg += f" busiest others: {', '.join(f'{n} {c:.2f}' for n, c in meter.top_others)}"
        noisy = meter.other_cores > self.args.noise_cores or meter.steal_cores > self.args.noise_cores
        if noisy:
            msg += "  WARNING: the machine was not quiet, figures are disturbed"
            self.noisy.append(part)
        if noisy or not quiet:
            say(msg)

    def wait_quiet(self, part: str) -> None:
        """Before a part: measure what other processes use for 1 s; with --wait-quiet, wait
        (up to that many seconds) until they use less than --noise-cores."""
        deadline = time.monotonic() + self.args.wait_quiet
        while True:
            with self.load() as meter:
                time.sleep(1.0)
            busiest = ", ".join(f"{n} {c:.2f}" for n, c in meter.top_others)
            if meter.other_cores <= self.args.noise_cores or time.monotonic() >= deadline:
                say(f"[before {part}: other processes use {meter.other_cores:.2f} cores{'; ' if busiest else ''}{busiest}]")
                return
            say(f"[before {part}: other processes use {meter.other_cores:.2f} cores ({busiest}); waiting for quiet]")
            time.sleep(2.0)

    # -- 1. latency -----------------------------------------------------------------------
    async def latency(self) -> None:
        a = self.args
        say(f"\n== 1. latency: {a.n_latency} serial jobs each, after {a.warmup} warm-up "
            f"(EmptyImage {a.image_size}x{a.image_size} -> SaveImage, order: {a.order})")
        comfy_url = self.ensure_comfyui()
        gw = self.gateway(comfy_url, workers=a.latency_workers, tag="latency")
        direct_out = self.newdir("direct-out")
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
                load = self.load()
                load.__enter__()
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
                self.note_load("latency", load)
        finally:
            self.stop(gw)
            shutil.rmtree(direct_out, ignore_errors=True)
        d, g = summary_ms(d_times), summary_ms(g_times)
        diff = g["median"] - d["median"]
        # interleaved: each gateway job next to a direct one; the median of the pairs' differences
        # resists load that comes and goes better than the difference of the medians
        paired = percentile([(gt - dt) * 1000 for gt, dt in zip(g_times, d_times)], 50)
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
        say(f"gateway adds {diff:+.2f} ms at the median (median of paired differences {paired:+.2f} ms)")
        say("gateway job breakdown (medians, ms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in breakdown.items() if v is not None))
        direct_steps = {k: percentile([x[k] for x in d_steps], 50) * 1000 for k in ("post", "wait", "history", "view")}
        say("direct steps (medians, ms): " + ", ".join(f"{k} {v:.2f}" for k, v in direct_steps.items()))
        gw_cpu = cpu.per_job_ms(max(len(g_times), 1)).get("gateway")
        say(f"gateway CPU per job: {gw_cpu} ms")
        self.raw["latency"] = {"direct_ms": d, "gateway_ms": g, "median_diff_ms": diff, "paired_median_diff_ms": paired,
                               "gateway_breakdown_ms": breakdown, "gateway_cpu_ms_per_job": gw_cpu,
                               "direct_steps_ms": direct_steps}
        self.add(
            Figure("latency", "direct median", d["median"], "ms"),
            Figure("latency", "direct p90", d["p90"], "ms"),
            Figure("latency", "direct p99", d["p99"], "ms"),
            Figure("latency", "gateway median", g["median"], "ms"),
            Figure("latency", "gateway p90", g["p90"], "ms"),
            Figure("latency", "gateway p99", g["p99"], "ms"),
            Figure("latency", "gateway - direct, median", diff, "ms", "<= 5 ms", diff <= 5.0),
            Figure("latency", "median of paired differences", paired, "ms"),
            noisy_if="latency",
        )

    # -- 2. throughput --------------------------------------------------------------------
    async def throughput(self) -> None:
        a = self.args
        per_round = [a.n_throughput // a.rounds + (1 if r < a.n_throughput % a.rounds else 0) for r in range(a.rounds)]
        say(f"\n== 2. throughput: {a.n_throughput} jobs per side in {a.rounds} round(s) of {per_round}; direct "
            f"pipelined vs {a.clients} concurrent sync clients; GENERATION_WORKERS in {a.gen_workers}")
        comfy_url = self.ensure_comfyui()
        self.raw["throughput"] = {}
        for workers in a.gen_workers:
            gw = self.gateway(comfy_url, workers=workers, tag="throughput")
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
                                res["direct"] = await self._direct_pipelined(comfy_url, per_round[r], f"gw{workers}-r{r}")
                            else:
                                res["gateway"] = await self._gateway_concurrent(client, gw, per_round[r], a.clients,
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
                self.stop(gw)
            n = a.n_throughput
            direct_rate, gw_rate = n / d_time, n / g_time
            idle = {side: sum(r[side]["comfy_idle"] * r[side]["seconds"] for r in rounds)
                    / sum(r[side]["seconds"] for r in rounds) for side in ("direct", "gateway")}
            ratio = gw_rate / direct_rate
            lat_ms = summary_ms(lat)
            say(f"GENERATION_WORKERS={workers}: direct {direct_rate:.1f} jobs/s, gateway {gw_rate:.1f} jobs/s, "
                f"ratio {ratio:.3f} (gateway per-call median {lat_ms['median']:.1f} ms, p99 {lat_ms['p99']:.1f})")
            self.raw["throughput"][f"gw{workers}"] = {
                "direct_jobs_per_s": direct_rate, "gateway_jobs_per_s": gw_rate, "ratio": ratio,
                "gateway_call_ms": lat_ms, "rounds": rounds, "comfy_idle": idle}
            self.add(
                Figure("throughput", f"direct pipelined (rounds beside gw{workers})", direct_rate, "jobs/s"),
                Figure("throughput", f"gateway, {a.clients} clients, GENERATION_WORKERS={workers}", gw_rate, "jobs/s"),
                Figure("throughput", f"ratio gateway/direct, GENERATION_WORKERS={workers}", ratio, "x",
                       ">= 0.90", ratio >= 0.90),
                Figure("throughput", f"ComfyUI idle during gateway run, gw{workers}",
                       100 * idle["gateway"], "%", note=f"direct {100 * idle['direct']:.1f}%"),
                noisy_if=f"throughput-gw{workers}-",
            )

    async def _direct_pipelined(self, comfy_url: str, n: int, tag: str) -> dict[str, Any]:
        a = self.args
        out = self.newdir("direct-tput")
        try:
            async with DirectComfy(comfy_url, out, timeout=a.job_timeout) as direct:
                for _ in range(3):  # warm-up
                    await direct.run(direct_workflow(a.image_size))
                workflows = [direct_workflow(a.image_size) for _ in range(n)]
                with CpuMeter(comfyui=self.comfy.pid if self.comfy else None, client=os.getpid()) as cpu, \
                        self.load() as load:
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
        self.note_load(f"throughput-{tag}-direct", load, quiet=True)
        return {"seconds": elapsed, "jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu.per_job_ms(n),
                "comfy_idle": probe.idle_fraction}

    async def _gateway_concurrent(self, client: GatewayClient, gw: Managed, n: int, clients: int,
                                  tag: str) -> dict[str, Any]:
        a = self.args
        remaining = itertools.count()
        latencies: list[float] = []
        workflows = [empty_save("bench", a.image_size) for _ in range(n)]

        async def worker() -> None:
            while (i := next(remaining)) < n:
                t = time.perf_counter()
                await client.sync(workflows[i])
                latencies.append(time.perf_counter() - t)

        with CpuMeter(gateway=gw.pid, comfyui=self.comfy.pid if self.comfy else None,
                      client=os.getpid()) as cpu, self.load() as load:
            async with ComfyIdleProbe(self.comfy_url or "") as probe:
                t0 = time.perf_counter()
                await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), a.phase_timeout)
                elapsed = time.perf_counter() - t0
        self.note_load(f"throughput-{tag}-gateway", load, quiet=True)
        return {"seconds": elapsed, "jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu.per_job_ms(n),
                "comfy_idle": probe.idle_fraction, "latencies": latencies}

    # -- 3a. memory with 10,000 queued jobs -------------------------------------------------
    async def mem_queue(self) -> None:
        a = self.args
        say(f"\n== 3a. memory: {a.mem_jobs} jobs queued behind a hung (fake) ComfyUI"
            + (f" (workflows padded with {a.mem_pad_nodes} extra nodes)" if a.mem_pad_nodes else ""))
        fake_url = self.ensure_fake()
        control(fake_url, {"hang": False})
        gw = self.gateway(fake_url, workers=2, max_queue=max(a.max_queue_size, 2 * a.mem_jobs), tag="memqueue")
        try:
            async with GatewayClient(gw.url, a.submit_concurrency + 4, a.job_timeout) as client:
                for _ in range(10):  # warm every code path before the baseline
                    await client.sync(empty_save("warm", 64))
                await asyncio.sleep(0.5)
                before = rss(gw.pid)
                control(fake_url, {"hang": True})
                t0 = time.perf_counter()
                with RssSampler(gw.pid, a.sample_ms / 1000) as sampler, self.load() as load:
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
                self.note_load("mem-queue", load)
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
                    drain = await self._drain(client, gw.pid, len(ids))
                self.raw["mem_queue"] = {
                    "jobs": len(ids), "rss_before": before, "rss_after": after, "rss_peak": sampler.peak,
                    "submit_s": submit_s, "waiting": waiting, "in_flight": in_flight, "drain": drain}
                self.add(
                    Figure("memory", "gateway RSS before", before / MB, "MB"),
                    Figure("memory", f"gateway RSS with {len(ids)} jobs queued", after / MB, "MB", "< 200 MB",
                           after < 200 * MB),
                    Figure("memory", "RSS growth per queued job", growth / max(len(ids), 1) / 1024, "KiB"),
                )
                if drain.get("drained"):
                    kept = (drain["rss_after"] - before) / max(len(ids), 1) / 1024
                    self.add(
                        Figure("memory", "drain rate after un-hang (fake)", drain["jobs_per_s"], "jobs/s"),
                        Figure("memory", "gateway RSS once they all completed", drain["rss_after"] / MB, "MB"),
                        Figure("memory", "RSS kept per completed job", kept, "KiB"),
                        )
        finally:
            control(fake_url, {"hang": False})
            self.stop(gw)

    async def _drain(self, client: GatewayClient, pid: int, jobs: int) -> dict[str, Any]:
        a = self.args
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
    async def mem_big(self) -> None:
        a = self.args
        say(f"\n== 3b. memory: one job whose output is {a.big_bytes / (1 << 30):.2f} GiB (fake FakeBigOutput)")
        fake_url = self.ensure_fake()
        control(fake_url, {"hang": False})
        gw = self.gateway(fake_url, workers=2, tag="membig")
        try:
            async with GatewayClient(gw.url, 4, a.job_timeout) as client:
                for _ in range(3):  # warm the same code path with a 1 MiB output
                    body = await client.sync(big_output(1 << 20, "warm"))
                    _delete_outputs(body, self.fake)
                await asyncio.sleep(0.5)
                with RssSampler(gw.pid, a.sample_ms / 1000) as base:
                    await asyncio.sleep(1.0)
                baseline = int(percentile([r for _, r in base.samples], 50))
                t0 = time.perf_counter()
                with RssSampler(gw.pid, a.sample_ms / 1000) as sampler, self.load() as load:
                    body = await client.sync(big_output(a.big_bytes))
                elapsed = time.perf_counter() - t0
            self.note_load("mem-big", load)
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
            self.raw["mem_big"] = {"bytes": size, "seconds": elapsed, "rss_baseline": baseline, "rss_peak": peak,
                                   "samples": len(sampler.samples), "durations": dur,
                                   "rss_series_mb": [round(r / MB, 2) for _, r in sampler.samples]}
            self.add(
                Figure("memory", f"big output: {size / (1 << 30):.2f} GiB in", elapsed, "s"),
                Figure("memory", "big output: peak RSS growth", growth / MB, "MB", "< 50 MB", growth < 50 * MB),
            )
            _delete_outputs(body, self.fake)
        finally:
            self.stop(gw)


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


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what}: over --phase-timeout")


def _print_profile(path: Path, top: int) -> None:
    import pstats

    say(f"\n-- cProfile of the gateway: {path} (top {top} by own time)")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    txt = path.with_suffix(".txt")
    with open(txt, "w") as fh:
        pstats.Stats(str(path), stream=fh).sort_stats("cumulative").print_stats(80)
    say(f"(cumulative view in {txt})")


# -- CLI -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="scaled-down sizes: 30 latency jobs, 80 throughput jobs, 1000 queued jobs, "
                   "100 MiB output")
    p.add_argument("--n-latency", type=int, default=200, help="serial jobs per side in part 1 (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up jobs per side before part 1 (default 20)")
    p.add_argument("--order", choices=("interleaved", "sequential"), default="interleaved",
                   help="part 1: alternate direct and gateway jobs (default), or all direct first")
    p.add_argument("--latency-workers", type=int, default=2, help="GENERATION_WORKERS of part 1's gateway")
    p.add_argument("--image-size", type=int, default=512, help="EmptyImage width and height (default 512)")
    p.add_argument("--n-throughput", type=int, default=400, help="jobs per side in part 2, split over --rounds (default 400)")
    p.add_argument("--clients", type=int, default=16, help="concurrent gateway clients in part 2 (default 16)")
    p.add_argument("--gen-workers", default="2,4", help="GENERATION_WORKERS values for part 2 (default 2,4)")
    p.add_argument("--rounds", type=int, default=2,
                   help="part 2: direct/gateway rounds per GENERATION_WORKERS value, alternating which "
                   "goes first; rates are total jobs / total time (default 2)")
    p.add_argument("--mem-jobs", type=int, default=10_000, help="jobs queued in part 3a (default 10000)")
    p.add_argument("--mem-pad-nodes", type=int, default=0,
                   help="part 3a: add N unconnected nodes to each queued workflow (real workflows are bigger "
                   "than EmptyImage->SaveImage; default 0)")
    p.add_argument("--submit-concurrency", type=int, default=32, help="concurrent POST /generate in part 3a")
    p.add_argument("--max-queue-size", type=int, default=20_000, help="MAX_QUEUE_SIZE of the gateways")
    p.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True,
                   help="part 3a: after un-hanging, wait for the queue to drain (default on)")
    p.add_argument("--drain-timeout", type=float, default=150.0, help="seconds to wait for the drain")
    p.add_argument("--big-bytes", type=parse_size, default=1 << 30, help="part 3b output size (default 1GiB)")
    p.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling interval in ms (default 50)")
    p.add_argument("--comfyui-url", help="use this running ComfyUI instead of starting one")
    p.add_argument("--gateway-log-level", default="warning",
                   help="API_LOG_LEVEL of the gateways (default warning: no access log lines)")
    p.add_argument("--profile-dir", type=Path, help="where --py-spy and --cprofile write their files "
                   "(default: the temp dir, removed unless --keep-temp)")
    p.add_argument("--cprofile", action="store_true", help="run each gateway under cProfile (wall-clock and heavy: "
                   "prefer --py-spy) and print its top functions")
    p.add_argument("--py-spy", metavar="BIN", help="sample every gateway with this py-spy binary (200 Hz, "
                   "on-CPU only) and print where its CPU time goes; files under --profile-dir or the temp dir")
    p.add_argument("--profile-top", type=int, default=30, help="lines of the cProfile summary to print")
    p.add_argument("--noise-cores", type=float, default=0.2,
                   help="warn when other processes use more CPU than this during a measurement (cores)")
    p.add_argument("--wait-quiet", type=float, default=0.0,
                   help="before each part, wait up to this many seconds for other processes to calm down")
    p.add_argument("--json", type=Path, help="also write every figure and the raw numbers as JSON here")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp folder (logs, outputs)")
    p.add_argument("--job-timeout", type=float, default=300.0, help="timeout of one job, seconds")
    p.add_argument("--phase-timeout", type=float, default=600.0, help="timeout of one measured phase, seconds")
    p.add_argument("--start-timeout", type=float, default=120.0, help="seconds for a server to become ready")
    p.add_argument("--install-timeout", type=float, default=1800.0, help="seconds for install_comfyui.sh")
    p.add_argument("--wait-fake", type=float, default=0.0,
                   help="seconds to wait for the fake ComfyUI module to exist (default: do not wait)")
    p.add_argument("--gateway-rev", metavar="REV",
                   help="benchmark this git revision of comfy_gateway (git archive into the temp dir) "
                   "instead of the work tree, e.g. HEAD while others edit the tree")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the gateway and the fake")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s): {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    args.gen_workers = [int(x) for x in str(args.gen_workers).split(",") if x.strip()]
    if args.quick:
        defaults = {"n_latency": 30, "warmup": 5, "n_throughput": 80, "mem_jobs": 1000, "big_bytes": 100 << 20}
        for key, value in defaults.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    (tmp / "logs").mkdir()
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
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "latency": bench.latency, "throughput": bench.throughput,
            "mem-queue": bench.mem_queue, "mem-big": bench.mem_big}
        for part in PARTS:
            if part not in args.parts:
                continue
            try:
                bench.wait_quiet(part)
                asyncio.run(steps[part]())
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
        if args.keep_temp:
            say(f"temp folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - started
    say(f"\n== summary ({total:.0f}s){' of an interrupted run' if interrupted else ''}")
    say(table(bench.figures))
    verdicts = [f.ok for f in bench.figures if f.ok is not None]
    say(f"\n{sum(verdicts)} of {len(verdicts)} targets met")
    if bench.noisy:
        say(f"WARNING: other processes used the CPU during {', '.join(bench.noisy)}: "
            "re-run those parts on a quiet machine before trusting their figures")
    if args.json:
        report = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": total, "git": _git_rev(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "figures": [f.as_dict() for f in bench.figures], "raw": bench.raw, "failed_parts": failed,
            "noisy_parts": bench.noisy,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"JSON written to {args.json}")
    if interrupted:
        return 130
    return 0 if all(verdicts) and not failed else 1


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "comfy_gateway"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
