"""Percentiles, bootstrap intervals, unit formatting and the PASS/FAIL/NOISY summary table."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def bootstrap_interval(stat: Callable[[list[int]], float], n: int, resamples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The `level` interval of `stat` over the indices 0..n-1, from `resamples` resamples of
    them with replacement (a fixed seed: the same samples give the same interval)."""
    rng = random.Random(seed)
    values = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    tail = (1 - level) / 2
    return values[int(tail * resamples)], values[min(int((1 - tail) * resamples), resamples - 1)]


def verdict_within(low: float, high: float, passes: Callable[[float], bool]) -> bool | None:
    """True when the whole interval passes, False when none of it does, None when the target
    lies inside it (too close to call in this run)."""
    lo_ok, hi_ok = passes(low), passes(high)
    return lo_ok if lo_ok == hi_ok else None


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in seconds]
    return {
        "n": len(ms),
        "min": min(ms) if ms else math.nan,
        "median": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else math.nan,
        "mean": sum(ms) / len(ms) if ms else math.nan,
    }


MiB = 1024 * 1024


def parse_size(text: str) -> int:
    """'1GiB', '1G', '500MB', '1048576' -> bytes (binary units either way)."""
    t = text.strip().lower().replace(" ", "")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and t[:-len(suffix)][-1:].isalpha():
            t = t[:-len(suffix)]
            break
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t.rstrip("b")))


@dataclass
class Figure:
    """One line of the final table. `ok` is None for figures that are informational."""

    part: str
    name: str
    value: float | None
    unit: str
    target: str = "-"
    ok: bool | None = None
    note: str = ""
    noisy: bool = False  # other processes used the CPU while it was measured
    # The value's spread in this run (a bootstrap interval, or the range of its rounds) holds the
    # target: the run cannot tell PASS from FAIL, whichever side `ok` (the value itself) is on.
    unsure: bool = False

    @property
    def verdict(self) -> str:
        v = "info" if self.ok is None else "NOISY" if self.unsure else ("PASS" if self.ok else "FAIL")
        return v + ("*" if self.noisy else "")

    @property
    def met(self) -> bool:
        return bool(self.ok) and not self.unsure

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def fmt_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit in ("ms",):
        return f"{value:.2f} {unit}"
    if unit in ("jobs/s",):
        return f"{value:.1f} {unit}"
    if unit in ("MB", "MiB"):
        return f"{value:.1f} {unit}"
    if unit == "x":
        return f"{value:.3f}"
    if unit == "KiB":
        return f"{value:.2f} {unit}"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value:.1f} {unit}"
    return f"{value:g} {unit}".strip()


def table(figures: list[Figure]) -> str:
    rows = [("part", "figure", "value", "target", "verdict")]
    for f in figures:
        rows.append((f.part, f.name + (f" ({f.note})" if f.note else ""), fmt_value(f.value, f.unit),
                     f.target, f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(f.noisy for f in figures):
        lines.append("* measured while other processes used more CPU than --noise-cores: re-run on a quiet machine")
    if any(f.unsure and f.ok is not None for f in figures):
        lines.append("NOISY: the figure's spread in this run (see its note) holds the target: neither PASS nor FAIL")
    return "\n".join(lines)
