"""The progress a job reports once ComfyUI has run its prompt: every node done."""

from __future__ import annotations

from ..jobs.model import Job, Progress


def finished_progress(job: Job) -> Progress:
    total = len(job.workflow or {})
    return Progress(node=None, node_type=None, value=1, max=1, nodes_done=total, nodes_total=total)
