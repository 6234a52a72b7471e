"""Small helpers shared by the routers."""

from __future__ import annotations

from fastapi import HTTPException, Request

from ..jobs.model import Job
from ..pipeline.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def job_or_404(runtime: Runtime, request_id: str) -> Job:
    """Any job, whoever owns it: routes about a client's job use ownership.visible_job_or_404."""
    job = await runtime.store.get(request_id)
    if job is None:
        raise HTTPException(404, detail=f"no job with id {request_id!r} (unknown, or its result expired)")
    return job
