"""Measured stage durations and the wait estimates built on them (no constants)."""

from __future__ import annotations

import math

from ..jobs.store import STAGES


class StageStats:
    """Exponentially weighted mean of how long one job takes in each stage's worker."""

    def __init__(self, alpha: float = 0.2):
        self._alpha = alpha
        self._mean: dict[str, float] = {}
        self.count: dict[str, int] = {s: 0 for s in STAGES}

    def record(self, stage: str, seconds: float) -> None:
        prev = self._mean.get(stage)
        self._mean[stage] = seconds if prev is None else prev + self._alpha * (seconds - prev)
        self.count[stage] += 1

    def mean(self, stage: str) -> float | None:
        return self._mean.get(stage)


def estimate_wait(
    stage: str, position: int | None, sizes: dict[str, int], workers: dict[str, int], stats: StageStats,
) -> float | None:
    """Seconds until a job waiting at `position` in `stage` should be done: its turn in this
    stage, then its own pass through every later stage with that stage's backlog ahead of it.
    None until every stage involved has been measured once."""
    total = 0.0
    start = STAGES.index(stage)
    for i, name in enumerate(STAGES[start:]):
        mean = stats.mean(name)
        if mean is None:
            return None
        w = max(workers.get(name, 1), 1)
        # In its own stage only the jobs before it count; in later ones, the whole backlog.
        ahead = (position or 0) if i == 0 else sizes.get(name, 0)
        total += math.floor(ahead / w) * mean + mean
    return round(total, 3)
