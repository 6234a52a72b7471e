"""What is measured beside the clocks: ComfyUI idle polls, RSS samples, CPU time per process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiohttp
import orjson
import psutil


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


class MachineCpu:
    """Cores the whole machine kept busy over a `with` block (every process, ours or not), out
    of how many it has: whether a phase was bounded by the cores rather than by what it ran."""

    def __enter__(self) -> "MachineCpu":
        self._t0, self._c0 = time.monotonic(), psutil.cpu_times()
        return self

    def __exit__(self, *exc: Any) -> None:
        c1, wall = psutil.cpu_times(), max(time.monotonic() - self._t0, 1e-9)
        idle = (c1.idle - self._c0.idle) + (getattr(c1, "iowait", 0.0) - getattr(self._c0, "iowait", 0.0))
        total = sum(c1) - sum(self._c0)
        self.cores = psutil.cpu_count() or 1
        self.busy_cores = self.cores * (1.0 - idle / total) if total > 0 else float("nan")
        self.wall = wall


def redis_server_pid(port: int = 6379) -> int | None:
    """The local redis-server's pid (its CPU is part of what a Redis-store job costs), if visible."""
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if (p.info.get("name") or "").startswith("redis-server") and (f":{port}" in cmd or not cmd.strip()):
            return p.pid
    return None
