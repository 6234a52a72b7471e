"""The command line of bench/bench_gateway.py: options, defaults, --quick sizes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchlib.cores import parse_cores
from benchlib.stats import parse_size

PARTS = ("latency", "throughput", "store-path", "mem-queue", "mem-big", "scaleout", "loop-stall", "fanout")


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="scaled-down sizes: 30 latency jobs, 80 throughput jobs, 1000 queued jobs, "
                   "100 MiB output, 600 followers of 6 jobs")
    p.add_argument("--n-latency", type=int, default=200, help="serial jobs per side in part 1 (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up jobs per side before part 1 (default 20)")
    p.add_argument("--order", choices=("interleaved", "sequential"), default="interleaved",
                   help="part 1: alternate direct and gateway jobs (default), or all direct first")
    p.add_argument("--latency-workers", type=int, default=2, help="GENERATION_WORKERS of part 1's gateway")
    p.add_argument("--image-size", type=int, default=512, help="EmptyImage width and height (default 512)")
    p.add_argument("--n-throughput", type=int, default=400, help="jobs per side in part 2, split over --rounds (default 400)")
    p.add_argument("--clients", default="4,16",
                   help="concurrent gateway clients in part 2, one measurement per value (default 4,16)")
    p.add_argument("--stores", default="memory,redis",
                   help="job stores of the gateways in parts 1, 2, store-path and 4, one gateway each (default memory,redis); "
                   "STORE@REV runs that store with the committed revision REV of comfy_gateway (e.g. "
                   "redis@HEAD~3,redis: before and after in one run)"),
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                   help="the Redis of the redis-store gateways (a key prefix of the run's own, deleted "
                   "afterwards; default redis://127.0.0.1:6379/0)")
    p.add_argument("--gen-workers", default="2,4", help="GENERATION_WORKERS values for part 2 (default 2,4)")
    p.add_argument("--rounds", type=int, default=2,
                   help="part 2: direct/gateway rounds per GENERATION_WORKERS value, alternating which "
                   "goes first; rates are total jobs / total time (default 2)")
    p.add_argument("--n-store", type=int, default=2000,
                   help="store-path: serial jobs per store through the store alone (default 2000)")
    p.add_argument("--mem-jobs", type=int, default=10_000, help="jobs queued in part 3a (default 10000)")
    p.add_argument("--mem-pad-nodes", type=int, default=50,
                   help="part 3a: add N unconnected nodes to each queued workflow, so that it is as big as a "
                   "real one (the README's example has 52 nodes; default 50)")
    p.add_argument("--submit-concurrency", type=int, default=32, help="concurrent POST /generate in part 3a")
    p.add_argument("--max-queue-size", type=int, default=20_000, help="MAX_QUEUE_SIZE of the gateways")
    p.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True,
                   help="part 3a: after un-hanging, wait for the queue to drain (default on)")
    p.add_argument("--drain-timeout", type=float, default=150.0, help="seconds to wait for the drain")
    p.add_argument("--big-bytes", type=parse_size, default=1 << 30, help="part 3b output size (default 1GiB)")
    p.add_argument("--fanout-followers", type=int, default=3000,
                   help="part 4: clients following the jobs' streams, one connection each (default 3000)")
    p.add_argument("--fanout-jobs", type=int, default=20, help="part 4: jobs they follow, evenly (default 20)")
    p.add_argument("--fanout-seconds", type=float, default=0.5,
                   help="part 4: how long each job runs at the fake (FakeSlow; default 0.5)")
    p.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling interval in ms (default 50)")
    p.add_argument("--scaleout-jobs", type=int, default=600, help="scaleout: jobs per phase (default 600)")
    p.add_argument("--scaleout-clients", type=int, default=32,
                   help="scaleout: concurrent sync clients, spread over the processes (default 32)")
    p.add_argument("--scaleout-fakes", type=int, default=1,
                   help="scaleout: fake ComfyUIs behind each gateway process (default 1)")
    p.add_argument("--scaleout-workers", type=int, default=4, help="scaleout: GENERATION_WORKERS (default 4)")
    p.add_argument("--scaleout-node-seconds", type=float, default=0.0,
                   help="scaleout: seconds a FakeSlow node takes per prompt (default 0: the fake answers at once)")
    p.add_argument("--stall-jobs", type=int, default=4, help="loop-stall: jobs per store (default 4)")
    p.add_argument("--stall-concurrency", type=int, default=2, help="loop-stall: jobs at once (default 2)")
    p.add_argument("--stall-input-bytes", type=parse_size, default=25_000_000,
                   help="loop-stall: size of each job's data: URI (default 25000000)")
    p.add_argument("--stall-node-seconds", type=float, default=3.0,
                   help="loop-stall: seconds of the FakeSlow node (default 3)")
    p.add_argument("--stall-steps", type=int, default=100, help="loop-stall: progress frames per job (default 100)")
    p.add_argument("--stall-probe-ms", type=float, default=15.0,
                   help="loop-stall: interval of the /queue-info probe (default 15 ms)")
    p.add_argument("--comfyui-url", help="use this running ComfyUI instead of starting one")
    p.add_argument("--comfyui-cores", metavar="LIST",
                   help="run the real ComfyUI the benchmark starts on these cores only (e.g. 1, or 2-3), "
                   "and the benchmark and everything else it starts on the others: ComfyUI's work then "
                   "takes no CPU from the gateway, as on a GPU (default: every process on every core)")
    p.add_argument("--gateway-log-level", default="info",
                   help="API_LOG_LEVEL of the gateways (default info, the gateway's own default: one "
                   "access-log line per request)")
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
    args.clients = [int(x) for x in str(args.clients).split(",") if x.strip()]
    args.stores = [x.strip() for x in str(args.stores).split(",") if x.strip()]
    if {s.partition("@")[0] for s in args.stores} - {"memory", "redis"}:
        p.error("--stores: memory and/or redis, each optionally @REV")
    if args.comfyui_cores:
        try:
            args.comfyui_cores = parse_cores(args.comfyui_cores)
        except ValueError as exc:
            p.error(f"--comfyui-cores: {exc}")
        if args.comfyui_url:
            p.error("--comfyui-cores pins the ComfyUI the benchmark starts: not with --comfyui-url")
    if args.quick:
        defaults = {"n_latency": 30, "warmup": 5, "n_throughput": 80, "n_store": 300, "mem_jobs": 1000, "big_bytes": 100 << 20,
                    "scaleout_jobs": 150, "stall_jobs": 2, "fanout_followers": 600, "fanout_jobs": 6}
        for key, value in defaults.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return args
