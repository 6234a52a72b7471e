"""GET /result/{id}, its event stream, cancelling, and the files of local outputs. Each answers
404 for a job the caller may not see, as for an unknown id (ownership.py)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sse_starlette import EventSourceResponse

from ..outputs.local import UnsafePath
from ..pipeline.cancel import AlreadyEnded
from .auth import current_key
from .deps import runtime_of
from .held_file import HeldFileResponse
from .jsonresp import JSONResponse
from .ownership import may_see_owner, not_found, visible_job_or_404
from .render import render_result
from .schemas import ErrorBody, JobResult
from .stream import job_events

router = APIRouter(tags=["results"])
NOT_FOUND = {404: {"model": ErrorBody, "description": "Unknown id, or its result expired"}}


@router.get("/result/{request_id}", response_model=JobResult, responses=NOT_FOUND, summary="A job as it stands")
async def result(request: Request, request_id: str) -> JSONResponse:
    job = await visible_job_or_404(request, request_id)
    return JSONResponse(render_result(job, str(request.base_url)))


@router.post("/result/{request_id}/cancel", response_model=JobResult, summary="Cancel a job",
             responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "The job already ended"}})
async def cancel(request: Request, request_id: str) -> JSONResponse:
    """A waiting job leaves its queue at once; one in ComfyUI's queue is deleted there; a running
    one is interrupted (that prompt only). The job ends `cancelled` and stays so."""
    runtime = runtime_of(request)
    await visible_job_or_404(request, request_id)
    try:
        job = await runtime.cancel(request_id)
    except KeyError:
        raise not_found(request_id) from None
    except AlreadyEnded as exc:
        return JSONResponse({"detail": f"job {request_id} already ended: {exc.job.status.value}",
                             "status": exc.job.status.value}, status_code=409)
    return JSONResponse(render_result(job, str(request.base_url)))


@router.delete("/result/{request_id}", response_model=JobResult, summary="Cancel a job (same as POST .../cancel)",
               responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "The job already ended"}})
async def delete(request: Request, request_id: str) -> JSONResponse:
    return await cancel(request, request_id)


@router.get("/result/{request_id}/stream", responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}}},
            summary="Follow any job as server-sent events (honours Last-Event-ID)")
async def result_stream(request: Request, request_id: str) -> EventSourceResponse:
    runtime = runtime_of(request)
    await visible_job_or_404(request, request_id)
    return EventSourceResponse(
        job_events(runtime, request_id, request.headers.get("last-event-id"), str(request.base_url)),
        ping=runtime.settings.sse_ping_seconds,
    )


@router.get("/outputs/{job_id}/{path:path}", responses=NOT_FOUND, summary="Download an output file")
async def output_file(request: Request, job_id: str, path: str) -> HeldFileResponse:
    runtime = runtime_of(request)
    try:
        file = runtime.storage.path_for(job_id, path)
    except UnsafePath:
        raise HTTPException(400, detail="invalid output path") from None
    key = current_key(request)
    if not key.sees_all():
        # A job's files outlive its record (LOCAL_OUTPUT_TTL): without the record, only an
        # admin may still read them.
        job = await runtime.store.get(job_id)
        if job is None or not may_see_owner(key, job.owner):
            raise HTTPException(404, detail=f"no output {path!r} for job {job_id!r}")
    missing = f"no output {path!r} for job {job_id!r}"
    if not file.is_file():
        raise HTTPException(404, detail=missing)
    return HeldFileResponse(file, gone=JSONResponse({"detail": missing}, status_code=404))
