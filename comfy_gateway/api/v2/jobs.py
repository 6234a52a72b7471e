"""/api/v2/jobs: submit, list, read, cancel, and the workflow behind a job. A v2 job is a
gateway job: the same store, stages, backends, limits and time limits, visible through
/result/{id} as well."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from starlette.responses import Response

from ...jobs.history import HistoryQuery
from ...jobs.model import Job
from ...logs import current_job_id
from ...pipeline.cancel import AlreadyEnded
from ...pipeline.runtime import Runtime
from ..auth import current_key
from ..deps import runtime_of
from ..jsonresp import JSONResponse
from ..ownership import may_see, visible_job
from .errors import V2Error, V2Route, not_found
from .submit import JobRequest, submit_v2
from .view import TERMINAL, iso, v2_job, v2_status

router = APIRouter(route_class=V2Route, tags=["v2 jobs"])
LIST_SCAN = 500  # jobs looked at for one page of a filtered list
STATUSES = {"queued", "running", "succeeded", "canceling", "canceled", "failed", "expired"}


async def render(runtime: Runtime, job: Job, request: Request, *, with_queue: bool = True,
                 queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """`queue`: the job's place when the caller has it (a stream's shared one), else read here."""
    if queue is None and with_queue and not job.status.terminal:
        queue, _ = await runtime.queue_position(job)
    s = runtime.settings
    return v2_job(job, str(request.base_url), retention=s.result_ttl, url_expiry=s.s3_url_expiry, queue=queue)


async def job_or_404(request: Request, job_id: str) -> Job:
    """The job, if the caller may see it (a job of another key is as unknown as a wrong id)."""
    job = await visible_job(request, job_id) if len(job_id) <= 128 else None
    if job is None:
        raise not_found("job", job_id)
    return job


@router.post("/jobs", status_code=201, summary="Submit an API-format workflow; refused at once if ComfyUI would refuse it")
async def submit(request: Request, body: Annotated[JobRequest, Body()],
                 idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Response:
    runtime = runtime_of(request)
    job = await submit_v2(runtime, body, idempotency_key, current_key(request))
    current_job_id.set(job.id)
    return JSONResponse(await render(runtime, job, request), status_code=201,
                        headers={"Location": f"/api/v2/jobs/{job.id}"})


@router.get("/jobs", summary="Jobs, newest first, a page at a time (next_cursor)")
async def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 50,
                    cursor: Annotated[str | None, Query(max_length=16)] = None,
                    status: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    runtime = runtime_of(request)
    try:
        offset = int(cursor) if cursor else 0
        if offset < 0:
            raise ValueError
    except ValueError:
        raise V2Error(400, "invalid_cursor", "cursor: pass the next_cursor of the previous page") from None
    wanted = {s.strip() for s in status.split(",") if s.strip()} if status else None
    if wanted and wanted - STATUSES:
        raise V2Error(400, "invalid_request", f"status: unknown value(s) {sorted(wanted - STATUSES)}")
    labels = {k[len("metadata["):-1]: v for k, v in request.query_params.multi_items()
              if k.startswith("metadata[") and k.endswith("]")}
    filtered = bool(wanted or labels)
    caller = current_key(request)
    if caller.sees_all():
        jobs = await runtime.store.recent(LIST_SCAN if filtered else min(LIST_SCAN, offset + limit + 1))
    else:  # a key's own jobs only (API_KEYS_FILE), from its own index
        jobs = (await runtime.store.history(HistoryQuery(owner=caller.name, limit=LIST_SCAN))).jobs

    def keep(job: Job) -> bool:
        mine = (job.request.get("v2") or {}).get("metadata") or {}
        return may_see(caller, job) and (not wanted or v2_status(job) in wanted) and all(mine.get(k) == v for k, v in labels.items())

    matching = [j for j in jobs if keep(j)]
    page = matching[offset:offset + limit]
    body: dict[str, Any] = {"jobs": []}
    for job in page:
        item = await render(runtime, job, request, with_queue=False)
        item["create_time"], item["update_time"] = item["created_at"], iso(job.updated_at)
        body["jobs"].append(item)
    if len(matching) > offset + limit:
        body["next_cursor"] = str(offset + limit)
    return JSONResponse(body)


@router.get("/jobs/{job_id}", summary="A job as it stands")
async def get_job(request: Request, job_id: str) -> Response:
    runtime = runtime_of(request)
    return JSONResponse(await render(runtime, await job_or_404(request, job_id), request))


@router.get("/jobs/{job_id}/workflow", summary="The API-format workflow the job ran (or will run)")
async def get_workflow(request: Request, job_id: str) -> Response:
    job = await job_or_404(request, job_id)
    workflow = job.workflow or job.request.get("workflow_json")
    if not isinstance(workflow, dict):
        raise V2Error(404, "not_found", f"job {job_id!r} has no workflow yet")
    return JSONResponse({"workflow": workflow, "format": "api"})


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (idempotent: an ended job is returned as it is)")
async def cancel(request: Request, job_id: str) -> Response:
    runtime = runtime_of(request)
    await job_or_404(request, job_id)
    try:
        job = await runtime.cancel(job_id)
    except KeyError:
        raise not_found("job", job_id) from None
    except AlreadyEnded as exc:
        job = exc.job
    body = await render(runtime, job, request)
    if body["status"] not in TERMINAL:
        body["status"] = "canceling"
    return JSONResponse(body)
