"""What a job used, counted once when it ends, and the sums /usage shows per key.

A usage record is written by the store in the same step as the job's terminal change (the
Redis store inside the script that ends the job), so a job is counted exactly once whoever
ended it, and the ledger outlives the job records (USAGE_TTL, longer than RESULT_TTL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .model import Job

FINAL = ("completed", "failed", "cancelled", "timed_out")


@dataclass(frozen=True)
class UsageRecord:
    key: str
    job_id: str
    status: str
    finished_at: float
    queue_seconds: float  # waiting in the gateway's stage queues, every stage
    gpu_seconds: float  # from the prompt's hand-over to a backend until its end there
    output_bytes: int

    def to_json(self) -> dict[str, Any]:
        # (not dataclasses.asdict, which deep-copies field by field: this is on every job's end)
        return {"key": self.key, "job_id": self.job_id, "status": self.status, "finished_at": self.finished_at,
                "queue_seconds": self.queue_seconds, "gpu_seconds": self.gpu_seconds, "output_bytes": self.output_bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "UsageRecord":
        return cls(key=str(data["key"]), job_id=str(data["job_id"]), status=str(data["status"]),
                   finished_at=float(data["finished_at"]), queue_seconds=float(data["queue_seconds"]),
                   gpu_seconds=float(data["gpu_seconds"]), output_bytes=int(data["output_bytes"]))


def _span(marks: dict[str, float], start: str, end: str, fallback: float) -> float:
    """Seconds from mark `start` to mark `end`, or to `fallback` (the job's end) when the job
    ended before `end`; 0 when `start` never happened."""
    if start not in marks:
        return 0.0
    return max(marks.get(end, fallback) - marks[start], 0.0)


def usage_of(job: Job) -> UsageRecord:
    """The usage of an ended job, from its marks (see Job.durations)."""
    m, end = job.marks, job.finished_at or job.updated_at
    waits = (_span(m, "created", "preprocess_started", end)
             + _span(m, "preprocess_finished", "generation_started", end)
             + _span(m, "generation_finished", "postprocess_started", end))
    return UsageRecord(
        key=job.owner or "anonymous", job_id=job.id, status=job.status.value, finished_at=end,
        queue_seconds=round(waits, 6), gpu_seconds=round(_span(m, "generation_started", "generation_finished", end), 6),
        output_bytes=sum(f.size_bytes or 0 for f in job.output),
    )


def _empty() -> dict[str, Any]:
    return {"jobs": {s: 0 for s in FINAL}, "queue_seconds": 0.0, "gpu_seconds": 0.0, "output_bytes": 0}


def add_up(records: Iterable[UsageRecord], keys: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Sums per key name: every key met, or exactly `keys` (those without a record at 0)."""
    out: dict[str, dict[str, Any]] = {k: _empty() for k in keys or ()}
    for r in records:
        if keys is not None and r.key not in keys:
            continue
        row = out.get(r.key)
        if row is None:
            row = out[r.key] = _empty()
        row["jobs"][r.status] = row["jobs"].get(r.status, 0) + 1
        row["queue_seconds"] += r.queue_seconds
        row["gpu_seconds"] += r.gpu_seconds
        row["output_bytes"] += r.output_bytes
    for row in out.values():
        row["jobs"]["total"] = sum(row["jobs"][s] for s in FINAL)
        row["queue_seconds"] = round(row["queue_seconds"], 3)
        row["gpu_seconds"] = round(row["gpu_seconds"], 3)
    return out
