"""Job -> the result object clients read (plain dicts on the hot path, orjson to the wire)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..jobs.model import Job


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def render_result(job: Job, base_url: str) -> dict[str, Any]:
    base = base_url.rstrip("/")
    output = []
    for f in job.output:
        item = f.model_dump()
        if (item.get("url") or "").startswith("/"):
            item["url"] = base + item["url"]
        output.append(item)
    return {
        "id": job.id,
        "request_id": job.request_id,
        "key": job.owner,
        "priority": job.priority,
        "status": job.status.value,
        "message": job.message,
        "output": output,
        "error": job.error.model_dump() if job.error else None,
        "progress": job.progress.model_dump() if job.progress else None,
        "backend": job.backend,
        "webhook": job.webhook.model_dump() if job.webhook else None,
        "warnings": job.warnings,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "finished_at": iso(job.finished_at),
        "durations": job.durations(),
    }
