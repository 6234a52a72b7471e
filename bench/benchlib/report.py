"""The end of a run: the summary table, the verdicts, the JSON report and the exit code."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from benchlib.common import say
from benchlib.context import Bench
from benchlib.procs import REPO
from benchlib.stats import table


def report(bench: Bench, total: float, failed: list[str], interrupted: bool) -> int:
    """Print the summary (and write --json); return the exit code: 0 only when every target is met
    and every part ran, 130 when interrupted."""
    args = bench.args
    say(f"\n== summary ({total:.0f}s){' of an interrupted run' if interrupted else ''}")
    say(table(bench.figures))
    judged = [f for f in bench.figures if f.ok is not None]
    unsure = sum(1 for f in judged if f.unsure)
    say(f"\n{sum(f.met for f in judged)} of {len(judged)} targets met"
        + (f"; {unsure} too close to call in this run (NOISY)" if unsure else ""))
    if bench.noisy:
        say(f"WARNING: other processes used the CPU during {', '.join(bench.noisy)}: "
            "re-run those parts on a quiet machine before trusting their figures")
    if args.json:
        report = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": total, "git": git_rev(),
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
    return 0 if all(f.met for f in judged) and not failed else 1


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "comfy_gateway"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

