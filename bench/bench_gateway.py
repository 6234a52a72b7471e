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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.cli.options import parse_args  # noqa: E402
from benchlib.runner import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv, description=__doc__))


if __name__ == "__main__":
    sys.exit(main())
