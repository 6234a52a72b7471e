"""POST /generate, /generate/sync and /generate/stream: the three ways to run a workflow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from sse_starlette import EventSourceResponse

from ..jobs.model import Job
from ..logs import current_job_id
from .deps import runtime_of
from .jsonresp import JSONResponse
from .render import render_result
from .schemas import REQUEST_EXAMPLES, ErrorBody, GenerateRequest, JobResult
from .stream import job_events

router = APIRouter(tags=["generate"])

Payload = Annotated[GenerateRequest, Body(openapi_examples=REQUEST_EXAMPLES)]

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    409: {"model": ErrorBody, "description": "request_id already used by a different request"},
    413: {"model": ErrorBody, "description": "Body over MAX_BODY_BYTES"},
    422: {"model": ErrorBody, "description": "The payload does not match the schema (says where)"},
    429: {"model": ErrorBody, "description": "Queue full (MAX_QUEUE_SIZE); see Retry-After"},
    503: {"model": ErrorBody, "description": "Shutting down: no new jobs; see Retry-After"},
    501: {"model": ErrorBody, "description": "A field this version does not serve yet"},
}

# HTTP status for a sync call whose job ended, by JobError.kind.
SYNC_STATUS = {"rejected": 400, "execution": 422, "interrupted": 409, "backend": 502, "internal": 500}

NOT_YET = {
    "modifier": "modifiers are not available in this version: send 'workflow_json'",
    "s3": "S3 outputs are not available in this version: outputs are stored under OUTPUT_DIR",
    "webhook": "webhooks are not available in this version: use /generate/sync, the stream or /result",
}


async def _submit(request: Request, body: GenerateRequest) -> tuple[Job, bool]:
    runtime = runtime_of(request)
    if runtime.draining:
        raise HTTPException(503, detail="the gateway is shutting down and takes no new jobs; retry on "
                            "another instance or shortly", headers={"Retry-After": "5"})
    limit = runtime.settings.max_job_timeout
    if body.input.timeout is not None and body.input.timeout > limit:
        raise HTTPException(422, detail=f"input.timeout: at most {limit:g} seconds (MAX_JOB_TIMEOUT)")
    for field, why in NOT_YET.items():
        if getattr(body.input, field) is not None:
            raise HTTPException(501, detail=f"input.{field}: {why}")
    payload = body.input.model_dump(mode="json", exclude_none=True)
    if body.input.request_id is not None:
        payload["request_id"] = str(body.input.request_id)
    job, created = await runtime.submit(payload)
    # Not reset on purpose: the rest of this request is about this job, down to uvicorn's
    # access log line, which is written from this request's task (and so sees its context).
    current_job_id.set(job.id)
    return job, created


def _result(request: Request, job: Job, status: int) -> JSONResponse:
    headers = {"Location": f"/result/{job.id}"} if status in (201, 202) else None
    return JSONResponse(render_result(job, str(request.base_url)), status_code=status, headers=headers)


@router.post("/generate", status_code=202, response_model=JobResult, responses=COMMON_ERRORS,
             summary="Queue a job; returns at once with its id")
async def generate(request: Request, body: Payload) -> JSONResponse:
    job, _ = await _submit(request, body)
    return _result(request, job, 202)


@router.post(
    "/generate/sync", response_model=JobResult,
    responses={**COMMON_ERRORS,
               202: {"model": JobResult, "description": "Still running when the timeout passed; see Location"},
               400: {"model": JobResult, "description": "ComfyUI rejected the workflow (node_errors in error)"},
               422: {"model": JobResult, "description": "A node failed while running, or invalid payload"},
               502: {"model": JobResult, "description": "The backend failed or lost the prompt"}},
    summary="Run a job and wait for its result",
)
async def generate_sync(
    request: Request, body: Payload,
    timeout: Annotated[float | None, Query(gt=0, description="seconds to wait (default SYNC_TIMEOUT)")] = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    limit = runtime.settings.max_sync_timeout
    if timeout is not None and timeout > limit:
        raise HTTPException(422, detail=f"timeout: at most {limit:g} seconds (MAX_SYNC_TIMEOUT)")
    job, _ = await _submit(request, body)
    done = await runtime.wait_until_done(job.id, timeout or runtime.settings.sync_timeout)
    job = done or job
    if not job.status.terminal:
        return _result(request, job, 202)
    status = SYNC_STATUS.get(job.error.kind, 500) if job.status.value == "failed" and job.error else 200
    return _result(request, job, status)


@router.post("/generate/stream", responses={**COMMON_ERRORS, 200: {
    "content": {"text/event-stream": {}},
    "description": "Events `status`, `queue`, `progress`, then one `final_result` carrying the result"}},
    summary="Run a job and follow it as server-sent events")
async def generate_stream(request: Request, body: Payload) -> EventSourceResponse:
    runtime = runtime_of(request)
    job, _ = await _submit(request, body)
    return EventSourceResponse(
        job_events(runtime, job.id, request.headers.get("last-event-id"), str(request.base_url)),
        ping=runtime.settings.sse_ping_seconds, headers={"Location": f"/result/{job.id}"},
    )
