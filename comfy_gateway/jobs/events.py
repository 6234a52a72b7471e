"""What the store records about a job as it moves: the log behind SSE streams and sync waits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class JobEvent:
    seq: int  # 1, 2, 3... per job: the SSE `id:` and what Last-Event-ID refers to
    type: str  # "status" | "progress" | "final_result"
    status: str
    message: str
    time: float
    progress: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
