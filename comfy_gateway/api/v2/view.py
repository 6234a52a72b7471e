"""A gateway Job as the v2 face shows it (comfy_low.models.Job): the same job, in v2 words."""

from __future__ import annotations

import mimetypes
from datetime import datetime, timezone
from typing import Any

from ...jobs.model import Job, JobStatus, OutputFile, Progress
from .ids import output_id

TERMINAL = {"succeeded", "canceled", "failed", "expired"}
_KIND_BY_KEY = {"images": "image", "gifs": "video", "video": "video", "videos": "video", "audio": "audio",
                "text": "text", "latents": "latent"}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def v2_status(job: Job) -> str:
    s = job.status
    if s in (JobStatus.queued, JobStatus.preprocessing):
        return "queued"
    if s is JobStatus.generating:
        # Waiting for a backend slot, or in ComfyUI's own queue, is still waiting: running
        # starts with ComfyUI's first `executing` frame for it (the first progress).
        return "running" if "generation_started" in job.marks and job.progress is not None else "queued"
    if s is JobStatus.postprocessing:
        return "running"
    return {JobStatus.completed: "succeeded", JobStatus.cancelled: "canceled"}.get(s, "failed")


def v2_progress(job: Job) -> dict[str, Any] | None:
    if job.status is JobStatus.completed:
        total = job.progress.nodes_total if job.progress else 0
        return {"value": 1.0, "nodes_done": total, "nodes_total": total}
    return progress_of(job.progress) if job.progress else None


def progress_of(p: Progress) -> dict[str, Any]:
    """The gateway's per-node progress as one v2 snapshot (overall fraction by nodes)."""
    share = (p.value / p.max) if p.max else 0.0
    value = (p.nodes_done + share) / p.nodes_total if p.nodes_total else 0.0
    out: dict[str, Any] = {"value": max(0.0, min(1.0, value)), "nodes_done": p.nodes_done,
                           "nodes_total": p.nodes_total, "current_node": p.node, "current_node_class": p.node_type}
    if p.max and p.max > 1:
        out.update(step=int(p.value), steps=int(p.max), message=f"{p.node_type or p.node} {int(p.value)}/{int(p.max)}")
    return out


def v2_error(job: Job) -> dict[str, Any] | None:
    if job.status is JobStatus.timed_out:
        return {"code": "timeout", "message": job.message, "node_id": None, "class_type": None, "traceback": None}
    e = job.error
    if e is None or job.status is not JobStatus.failed:
        return None
    details = e.details or {}
    if e.kind == "execution":
        tb = details.get("traceback")
        return {"code": "node_execution_error", "message": str(details.get("exception_message") or e.message),
                "node_id": _str(details.get("node_id")), "class_type": _str(details.get("node_type")),
                "traceback": "".join(tb) if isinstance(tb, list) else _str(tb)}
    code = {"rejected": "invalid_workflow", "input": "missing_asset" if e.type == "input_unavailable" else "invalid_input",
            "interrupted": "interrupted", "backend": "backend_error", "storage": "storage_error"}.get(e.kind, e.kind)
    return {"code": code, "message": e.message, "node_id": None, "class_type": None, "traceback": None}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def output_kind(out: OutputFile) -> str:
    major = (out.content_type or "").split("/", 1)[0]
    if major in ("image", "video", "audio", "text"):
        return major
    return _KIND_BY_KEY.get(out.output_type, "file")


def v2_output(job: Job, index: int, out: OutputFile, base: str, url_expires: float) -> dict[str, Any]:
    aid = output_id(job.id, index)
    return {"node_id": out.node_id, "name": out.filename, "type": output_kind(out),
            "content_type": out.content_type or mimetypes.guess_type(out.filename)[0] or "application/octet-stream",
            "size_bytes": out.size_bytes or 0, "id": aid, "hash": None,
            "url": f"{base}/api/v2/assets/{aid}/content", "url_expires_at": iso(url_expires), "job_id": job.id}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def v2_job(job: Job, base: str, *, retention: float, url_expiry: float,
           queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base`: the origin clients reached us on (output urls must be absolute); `retention`:
    RESULT_TTL; `url_expiry`: how long an S3 output link lives; `queue`: the job's place in its
    stage queue (runtime.queue_position), when the caller looked it up."""
    base = base.rstrip("/")
    status = v2_status(job)
    ends = job.finished_at or job.deadline or job.created_at
    d = job.durations()
    waited = [d[k] for k in ("queue_wait", "preprocess", "generation_wait") if d[k] is not None]
    position = queue.get("position") if queue else None
    finished = job.finished_at or job.updated_at
    outputs = [v2_output(job, i, out, base, finished + (url_expiry if out.s3_key else retention))
               for i, out in enumerate(job.output)]
    body: dict[str, Any] = {
        "id": job.id, "status": status, "created_at": iso(job.created_at),
        "started_at": iso(job.marks.get("generation_started")), "completed_at": iso(job.finished_at),
        "expires_at": iso(ends + retention),
        "queue_position": position + 1 if status == "queued" and position is not None else None,
        "progress": v2_progress(job), "outputs": outputs, "error": v2_error(job),
        "metrics": {"queue_ms": _ms(sum(waited)) if waited else None, "execution_ms": _ms(d["generation"])},
        "urls": {"self": f"/api/v2/jobs/{job.id}", "events": f"/api/v2/jobs/{job.id}/events",
                 "cancel": f"/api/v2/jobs/{job.id}/cancel"},
        # What the gateway's own API shows of the same job; v2 clients ignore fields they do not know.
        "gateway": {"status": job.status.value, "message": job.message, "result_url": f"/result/{job.id}",
                    "queue": queue},
    }
    labels = (job.request.get("v2") or {}).get("metadata")
    if labels:
        body["metadata"] = labels
    return body
