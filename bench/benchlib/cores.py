"""Splitting the machine's cores between ComfyUI and the rest (`--comfyui-cores`).

On a 2-core machine a CPU ComfyUI uses both cores, so every millisecond of CPU the gateway
spends is taken from ComfyUI and shows up as lost throughput. In production ComfyUI's work runs
on a GPU and the gateway's CPU is its own. Pinning ComfyUI to some cores and everything else to
the others gives that picture on a CPU machine: the direct client and the gateway then compete
only with each other's CPU, not with ComfyUI's.
"""

from __future__ import annotations

import os


def parse_cores(text: str) -> frozenset[int]:
    """'1', '0,2', '2-3' -> the cores, each one this process may run on."""
    cores: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{part!r} is not a core number or a range like 2-3") from None
        if first > last:
            raise ValueError(f"{part!r}: the range is empty")
        cores.update(range(first, last + 1))
    if not cores:
        raise ValueError("no core given")
    usable = os.sched_getaffinity(0)
    if not cores <= usable:
        raise ValueError(f"cores {sorted(cores - usable)} are not among this machine's {sorted(usable)}")
    if not usable - cores:
        raise ValueError(f"no core is left for the benchmark and the gateways (this machine has {sorted(usable)})")
    return frozenset(cores)


def keep_off(cores: frozenset[int]) -> frozenset[int]:
    """Move this process (and so every process it starts from now on) off `cores`; returns the
    cores it keeps."""
    rest = frozenset(os.sched_getaffinity(0) - cores)
    os.sched_setaffinity(0, rest)
    return rest


def pinned_env(cores: frozenset[int]) -> dict[str, str]:
    """Thread counts for a process on `cores`: torch (and the BLAS under it) would otherwise
    start one thread per core of the machine and crowd its few cores."""
    n = str(len(cores))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
