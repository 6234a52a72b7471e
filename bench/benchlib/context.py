"""The state of one benchmark run: its processes (ComfyUI, the fake, gateways, py-spy), its
figures and raw numbers, the background-load checks."""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.common import say
from benchlib.procs import (
    REPO as SRC_DEFAULT, Managed, ProcessManager, fake_available, install_comfyui, snapshot_source, start_fake_comfyui,
    start_gateway, start_real_comfyui,
)
from benchlib.redis_store import CommandStats, delete_prefix, new_prefix, store_env
from benchlib.profiling import LoadMeter, format_summary, summarize_collapsed
from benchlib.stats import Figure


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
    redis_prefixes: list[str] = field(default_factory=list)  # deleted at the end of the run
    sources: dict[str, Path] = field(default_factory=dict)  # REV -> its snapshot (--stores STORE@REV)

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

    def source_of(self, store: str) -> Path:
        """Where a gateway of this store spec ("redis" or "redis@REV") imports comfy_gateway from."""
        rev = store.partition("@")[2]
        if not rev:
            return self.src
        dest = self.tmp / f"src-{len(self.sources)}"
        if rev not in self.sources:
            commit = snapshot_source(rev, dest)
            self.sources[rev] = dest
            say(f"gateway code for {store}: {rev} = {commit[:12]} (git archive into {dest})")
        return self.sources[rev]

    def store_env(self, store: str) -> dict[str, str]:
        store = store.partition("@")[0]
        prefix = new_prefix()
        if store == "redis":
            self.redis_prefixes.append(prefix)
        return store_env(store, self.args.redis_url, prefix)

    def redis_stats(self) -> CommandStats:
        return CommandStats(self.args.redis_url)

    def drop_redis_keys(self) -> None:
        for prefix in self.redis_prefixes:
            try:
                delete_prefix(self.args.redis_url, prefix)
            except Exception as exc:  # noqa: BLE001 - report, go on
                say(f"could not delete the Redis keys under {prefix}: {exc}")
        self.redis_prefixes.clear()

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
        cores = self.args.comfyui_cores
        self.comfy = start_real_comfyui(self.pm, self.newdir("comfyui-base"), self.args.start_timeout, cores)
        if cores:
            say(f"ComfyUI runs on cores {sorted(cores)} only, the benchmark and its other processes on "
                f"{sorted(os.sched_getaffinity(0))} (Redis, not started here, wherever the system runs it)")
            self.raw["comfyui_cores"] = sorted(cores)
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
        self.fake = self.new_fake()
        return self.fake.url

    def new_fake(self) -> Managed:
        """Another fake ComfyUI of this run's own (the caller stops it with stop())."""
        fake = start_fake_comfyui(self.pm, self.python, self.newdir("fake-base"), self.args.start_timeout,
                                  src=self.src)
        say(f"fake ComfyUI ready at {fake.url} (pid {fake.pid})")
        return fake

    def gateway(self, comfy_url: str, *, workers: int, max_queue: int | None = None, tag: str = "",
                store: str = "memory", env: dict[str, str] | None = None) -> Managed:
        """A gateway in front of `comfy_url` (several: comma-separated). `env`: settings on top
        of the store's (pass one `store_env()` to several gateways to share a Redis prefix)."""
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
            timeout=self.args.start_timeout, profile_to=profile_to, src=self.source_of(store),
            extra_env={**self.store_env(store), **(env or {})})
        gw.info["profile"] = str(profile_to) if profile_to else None
        say(f"gateway ({store} store, GENERATION_WORKERS={workers}) ready at {gw.url} (pid {gw.pid}, "
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


def _print_profile(path: Path, top: int) -> None:
    import pstats

    say(f"\n-- cProfile of the gateway: {path} (top {top} by own time)")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    txt = path.with_suffix(".txt")
    with open(txt, "w") as fh:
        pstats.Stats(str(path), stream=fh).sort_stats("cumulative").print_stats(80)
    say(f"(cumulative view in {txt})")
