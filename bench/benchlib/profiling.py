"""Optional py-spy sampling of a gateway, summarised from py-spy's raw (collapsed) output, and
a meter of the CPU that processes outside the benchmark used meanwhile."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

# where a frame's file lives -> a short bucket name
_BUCKETS = [
    ("comfy_gateway/", "comfy_gateway"), ("aiohttp/", "aiohttp"), ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette"), ("fastapi/", "fastapi"), ("pydantic", "pydantic"),
    ("sse_starlette", "sse_starlette"), ("asyncio/", "asyncio"), ("yarl/", "yarl"),
    ("multidict/", "multidict"), ("httptools", "httptools"), ("uvloop", "uvloop"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _bucket(frame: str) -> str:
    m = _FRAME.match(frame)
    path = m.group("file") if m else frame
    for needle, name in _BUCKETS:
        if needle in path:
            return name
    return "stdlib/other" if path else "?"


def summarize_collapsed(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample counts per function, and self samples per library, from a
    py-spy `--format raw` file (one `frame;frame;...;leaf count` line per distinct stack)."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    gw_incl: Counter[str] = Counter()  # inclusive, but only comfy_gateway's own functions
    buckets: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        # drop the thread/process header frames py-spy may put first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        self_counts[_short(leaf)] += n
        buckets[_bucket(leaf)] += n
        for f in {_short(f) for f in frames}:
            incl_counts[f] += n
        for f in {_short(f) for f in frames if "comfy_gateway/" in f}:
            gw_incl[f] += n
    return {
        "samples": total,
        "self_by_library": _pct(buckets, total, 20),
        "self_top": _pct(self_counts, total, top),
        "inclusive_top": _pct(incl_counts, total, top),
        "comfy_gateway_inclusive": _pct(gw_incl, total, top),
    }


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def _pct(counter: Counter[str], total: int, top: int) -> list[tuple[str, int, float]]:
    return [(k, v, round(100.0 * v / max(total, 1), 1)) for k, v in counter.most_common(top)]


def format_summary(s: dict[str, Any], top: int = 20) -> str:
    out = [f"{s['samples']} on-CPU samples"]
    for title, key in (("self time by library", "self_by_library"), ("self time, top functions", "self_top"),
                       ("inclusive, comfy_gateway functions", "comfy_gateway_inclusive")):
        out.append(f"  {title}:")
        out += [f"    {pct:5.1f}%  {name}" for name, _, pct in s[key][:top]]
    return "\n".join(out)


class LoadMeter:
    """CPU that user-space processes OTHER than ours used during a block, in cores (plus the
    kernel's own threads, e.g. writeback of the files we write, and VM steal time, apart):
    a benchmark on a shared 2-core machine is only as good as its quiet."""

    def __init__(self, pids: list[int]):
        self._ours_roots = list(pids)
        self.other_cores = 0.0
        self.kernel_cores = 0.0
        self.steal_cores = 0.0
        self.ours_cores = 0.0
        self.top_others: list[tuple[str, float]] = []

    def _ours(self) -> set[int]:
        found: set[int] = set()
        for pid in self._ours_roots:
            try:
                p = psutil.Process(pid)
                found.add(p.pid)
                found.update(c.pid for c in p.children(recursive=True))
            except psutil.Error:
                pass
        return found

    @staticmethod
    def _snapshot() -> dict[int, tuple[float, float, str, bool]]:
        """pid -> (create_time, cpu seconds, name, is kernel thread)"""
        snap = {}
        for p in psutil.process_iter(["create_time", "cpu_times", "name", "ppid"]):
            info = p.info
            t = info.get("cpu_times")
            if t is None:
                continue
            kernel = p.pid == 2 or info.get("ppid") == 2
            snap[p.pid] = (info.get("create_time") or 0.0, t.user + t.system, info.get("name") or "?", kernel)
        return snap

    def __enter__(self) -> "LoadMeter":
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._steal0 = getattr(psutil.cpu_times(), "steal", 0.0)
        self._snap0 = self._snapshot()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = max(time.monotonic() - self._t0, 1e-9)
        snap1 = self._snapshot()
        ours = self._ours()
        other = kernel = mine = 0.0
        per: dict[str, float] = {}
        for pid, (created, cpu, name, is_kernel) in snap1.items():
            before = self._snap0.get(pid)
            if before is not None and abs(before[0] - created) < 0.01:
                used = cpu - before[1]
            else:  # started meanwhile: count at most the window
                used = min(cpu, max(0.0, time.time() - created), wall)
            used = max(used, 0.0)
            if pid in ours:
                mine += used
            elif is_kernel:
                kernel += used
            else:
                other += used
                per[f"{name}[{pid}]"] = per.get(f"{name}[{pid}]", 0.0) + used
        self.ours_cores = mine / wall
        self.other_cores = other / wall
        self.kernel_cores = kernel / wall
        self.steal_cores = (getattr(psutil.cpu_times(), "steal", 0.0) - self._steal0) / wall
        self.top_others = sorted(((k, round(v / wall, 2)) for k, v in per.items() if v > 0),
                                 key=lambda kv: -kv[1])[:3]
