"""What every part of the benchmark shares: the unit of the memory targets and the log."""

from __future__ import annotations

MB = 1_000_000  # targets are in decimal megabytes (stricter than MiB)


def say(msg: str = "") -> None:
    print(msg, flush=True)
