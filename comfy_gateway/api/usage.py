"""GET /usage: what each key used, from the ledger of ended jobs (kept USAGE_TTL)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from ..jobs.usage import add_up
from .deps import runtime_of
from .history import epoch
from .jsonresp import JSONResponse
from .ownership import listing_owner

router = APIRouter(tags=["usage"])


class KeyUsage(BaseModel):
    jobs: dict[str, int] = Field(description="ended jobs by final status, and their total")
    queue_seconds: float = Field(description="time waiting in the gateway's queues, every stage")
    gpu_seconds: float = Field(description="time on a backend, from the prompt's hand-over to its end")
    output_bytes: int = Field(description="bytes of the outputs stored")


class Usage(BaseModel):
    since: str | None
    until: str | None
    keys: dict[str, KeyUsage] = Field(description="by key name; an admin sees every key, a key itself")


@router.get("/usage", response_model=Usage, summary="What each key used: jobs, queue and GPU seconds, bytes")
async def usage(
    request: Request,
    since: Annotated[datetime | None, Query(description="jobs that ended at or after this ISO 8601 time")] = None,
    until: Annotated[datetime | None, Query(description="jobs that ended before this ISO 8601 time")] = None,
) -> JSONResponse:
    """Counted when a job ends, whoever ended it; by default everything still kept (USAGE_TTL)."""
    owner = listing_owner(request, None)
    records = await runtime_of(request).store.usage(epoch(since, "since"), epoch(until, "until"))
    sums = add_up(records, None if owner is None else {owner})
    return JSONResponse({"since": since.isoformat() if since else None,
                         "until": until.isoformat() if until else None, "keys": sums})
