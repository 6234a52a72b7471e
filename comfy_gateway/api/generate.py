"""POST /generate, /generate/sync and /generate/stream: the three ways to run a workflow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from sse_starlette import EventSourceResponse
from starlette.responses import Response

from ..jobs.following import JobEvents, Wake
from ..jobs.model import Job
from ..logs import current_job_id
from ..net.guard import UrlRefused, check_url
from ..pipeline.runtime import Runtime
from .auth import current_key
from .deps import runtime_of
from .disconnect import cancel_if_abandoned, unless_disconnected
from .jsonresp import JSONResponse
from .render import render_result
from .schemas import REQUEST_EXAMPLES, ErrorBody, GenerateRequest, JobResult
from .stream import job_events

router = APIRouter(tags=["generate"])

Payload = Annotated[GenerateRequest, Body(openapi_examples=REQUEST_EXAMPLES)]

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON; an unknown modifier (the known ones are listed); "
                                             "an input URL refused (the body is the failed result, naming it)"},
    409: {"model": ErrorBody, "description": "request_id already used by a different request"},
    413: {"model": ErrorBody, "description": "Body over MAX_BODY_BYTES, or an input over MAX_INPUT_BYTES"},
    415: {"model": ErrorBody, "description": "Body not JSON, or an input declared as an image that is not one"},
    422: {"model": ErrorBody, "description": "The payload does not match the schema, or the modifications do not "
                                             "fit the modifier (says where); an input that could not be fetched"},
    429: {"model": ErrorBody, "description": "Queue full (MAX_QUEUE_SIZE), or the key's max_queued reached; "
                                             "see Retry-After"},
    503: {"model": ErrorBody, "description": "Shutting down: no new jobs; see Retry-After"},
    501: {"model": ErrorBody, "description": "A field this version, or this gateway's configuration, does not serve"},
}

# HTTP status for a sync call whose job ended, by JobError.kind; inputs by JobError.type.
SYNC_STATUS = {"rejected": 400, "execution": 422, "interrupted": 409, "backend": 502, "storage": 502,
               "internal": 500, "modifier": 422, "input": 422}
INPUT_STATUS = {"input_refused": 400, "input_too_large": 413, "input_type": 415}
# Failures of preprocessing: the request itself was unusable, so every mode answers them.
ADMISSION_KINDS = {"modifier", "input"}
# /generate also answers, instead of a 202, a workflow refused by the early check against the
# backends' /object_info (workflows/checker.py); a stream reports it as its final_result.
GENERATE_REFUSALS = ADMISSION_KINDS | {"rejected"}


async def _submit(request: Request, body: GenerateRequest,
                  follow: Wake | None = None) -> tuple[Job, JobEvents | None]:
    runtime = runtime_of(request)
    if runtime.draining:
        raise HTTPException(503, detail="the gateway is shutting down and takes no new jobs; retry on "
                            "another instance or shortly", headers={"Retry-After": "5"})
    limit = runtime.settings.max_job_timeout
    if body.input.timeout is not None and body.input.timeout > limit:
        raise HTTPException(422, detail=f"input.timeout: at most {limit:g} seconds (MAX_JOB_TIMEOUT)")
    key = current_key(request)
    if body.input.priority > key.max_priority:
        raise HTTPException(422, detail=f"input.priority: at most {key.max_priority} for key {key.name!r} "
                                        "(its max_priority)")
    if body.input.modifier is not None:
        # Cheap and pure: an unknown name (400) or modifications that do not fit (422) are
        # answered before anything is queued. UnknownModifier / InvalidModifications -> errors.py.
        runtime.modifiers.check(body.input.modifier, body.input.modifications)
    check_destinations(body, runtime)
    job, _, events = await runtime.submit_followed(body.input.job_payload(), key, follow)
    # Not reset on purpose: the rest of this request is about this job, down to uvicorn's
    # access log line, which is written from this request's task (and so sees its context).
    current_job_id.set(job.id)
    return job, events


def check_destinations(body: GenerateRequest, runtime: Runtime) -> None:
    """Refuse up front what the address guard can judge without a DNS look-up (scheme, literal
    loopback or private addresses); names are checked again where they resolve."""
    policy = runtime.settings.network_policy
    inp = body.input
    if inp.webhook is not None:
        if not runtime.webhooks.can_sign:
            raise HTTPException(501, detail="input.webhook: this gateway has no WEBHOOK_SECRET to sign "
                                            "webhooks with; its operator must set one")
        try:
            check_url(str(inp.webhook.url), policy, what="input.webhook.url")
        except UrlRefused as exc:
            raise HTTPException(422, detail=f"{exc} (ASSET_ALLOWED_NETWORKS lists what may be reached)") from None
    if inp.s3 is not None and inp.s3.endpoint_url is not None:
        try:
            check_url(str(inp.s3.endpoint_url), policy, what="input.s3.endpoint_url")
        except UrlRefused as exc:
            raise HTTPException(422, detail=f"{exc} (ASSET_ALLOWED_NETWORKS lists what may be reached)") from None


async def _admitted(request: Request, job: Job) -> Job:
    """The job once preprocessing has built its workflow and fetched its inputs (bounded by
    SYNC_TIMEOUT), so a refused input is answered as a 4xx by every mode, not found later."""
    runtime = runtime_of(request)
    return await runtime.wait_until_admitted(job.id, runtime.settings.sync_timeout, known=job) or job


def failure_status(job: Job) -> int:
    if job.status.value != "failed" or job.error is None:
        return 200
    if job.error.kind == "input":
        return INPUT_STATUS.get(job.error.type, 422)
    return SYNC_STATUS.get(job.error.kind, 500)


def _refused(job: Job, kinds: set[str] = ADMISSION_KINDS) -> bool:
    return job.status.value == "failed" and job.error is not None and job.error.kind in kinds


def _result(request: Request, job: Job, status: int) -> JSONResponse:
    headers = {"Location": f"/result/{job.id}"} if status in (201, 202) else None
    return JSONResponse(render_result(job, str(request.base_url)), status_code=status, headers=headers)


@router.post("/generate", status_code=202, response_model=JobResult, responses=COMMON_ERRORS,
             summary="Queue a job; returns with its id once its inputs are fetched and checked")
async def generate(request: Request, body: Payload) -> JSONResponse:
    job, _ = await _submit(request, body)
    job = await _admitted(request, job)
    return _result(request, job, failure_status(job) if _refused(job, GENERATE_REFUSALS) else 202)


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
    # Followed from before it exists: the wait for its end needs no first look at the store.
    job, events = await _submit(request, body, follow="end")
    try:
        waiting = runtime.wait_until_done(job.id, timeout or runtime.settings.sync_timeout, known=job, events=events)
        if body.input.cancel_on_disconnect:
            done = await unless_disconnected(request, runtime, job.id, waiting)
        else:
            done = await waiting
    finally:
        if events is not None:
            events.close()  # (the wait closes them too, if it started)
    job = done or job
    if not job.status.terminal:
        return _result(request, job, 202)
    return _result(request, job, failure_status(job))


@router.post("/generate/stream", responses={**COMMON_ERRORS, 200: {
    "content": {"text/event-stream": {}},
    "description": "Events `status`, `queue`, `progress`, then one `final_result` carrying the result"}},
    summary="Run a job and follow it as server-sent events")
async def generate_stream(request: Request, body: Payload) -> Response:
    runtime = runtime_of(request)
    job, _ = await _submit(request, body)
    job = await _admitted(request, job)
    if _refused(job):
        return _result(request, job, failure_status(job))
    events = job_events(runtime, job.id, request.headers.get("last-event-id"), str(request.base_url))
    if body.input.cancel_on_disconnect:
        events = cancel_if_abandoned(runtime, job.id, events)
    return EventSourceResponse(
        events,
        ping=runtime.settings.sse_ping_seconds, headers={"Location": f"/result/{job.id}"},
    )
