"""GET /jobs: the jobs still kept, newest first, filtered and paged for a dashboard. A key that
is not an admin sees its own; outputs are listed without their inline base64 (fetch one job's
result for that), so a page stays small whatever the jobs asked for."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from ..jobs.history import HistoryQuery, decode_cursor, encode_cursor
from ..jobs.model import JobStatus
from .deps import runtime_of
from .jsonresp import JSONResponse
from .ownership import listing_owner
from .render import render_result
from .schemas import ErrorBody, JobList

router = APIRouter(tags=["results"])
STATUSES = [s.value for s in JobStatus]


def epoch(value: datetime | None, name: str) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(422, detail=f"{name}: give a time zone (e.g. 2026-11-27T08:00:00Z)")
    return value.timestamp()


@router.get("/jobs", response_model=JobList, summary="Jobs still kept, newest first, filtered and paged",
            responses={403: {"model": ErrorBody, "description": "`key` asked by a key that is not an admin"},
                       422: {"model": ErrorBody, "description": "A filter or cursor that cannot be used"}})
async def jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="how many (at most 500)")] = 20,
    status: Annotated[list[str] | None,
                      Query(description=f"only these statuses (repeat it): {', '.join(STATUSES)}")] = None,
    since: Annotated[datetime | None, Query(description="created at or after this ISO 8601 time")] = None,
    until: Annotated[datetime | None, Query(description="created before this ISO 8601 time")] = None,
    key: Annotated[str | None, Query(max_length=64, description="only this key's jobs (admin keys only)")] = None,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    """Jobs still kept (finished ones for RESULT_TTL), each as its result object without inline
    base64. `next_cursor` continues the list; null when nothing more matches. A page may hold
    fewer than `limit` jobs while `next_cursor` is set (a rare status among many jobs)."""
    owner = listing_owner(request, key)
    unknown = sorted(set(status or ()) - set(STATUSES))
    if unknown:
        raise HTTPException(422, detail=f"status: unknown {', '.join(map(repr, unknown))}; "
                                        f"one of {', '.join(STATUSES)}")
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise HTTPException(422, detail=f"cursor: {exc}") from None
    query = HistoryQuery(owner=owner, statuses=frozenset(status) if status else None,
                         since=epoch(since, "since"), until=epoch(until, "until"), after=after, limit=limit)
    page = await runtime_of(request).store.history(query)
    base = str(request.base_url)
    listed = []
    for job in page.jobs:
        item = render_result(job, base)
        for output in item["output"]:
            output["base64"] = None
        listed.append(item)
    return JSONResponse({"jobs": listed, "next_cursor": encode_cursor(page.next_after)})
