"""Which jobs a caller may see, for every route about a job (this API's and any other face's).

Under API_KEYS_FILE a job belongs to the key that submitted it (Job.owner): another key that
is not an admin gets the same 404 as for an id that does not exist, so it cannot even learn
that the id is in use. With API_KEYS or no keys, every caller is an admin and sees every job.

Use from a route:

    key = current_key(request)                      # after require_api_key
    job = await visible_job_or_404(request, job_id)  # the job, or HTTPException(404)
    if not may_see(key, job): ...                   # for a job read some other way
    owner = listing_owner(request, asked_key)        # the owner filter for a list (403/None/name)
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from ..access.keys import ApiKey
from ..jobs.model import Job
from .auth import current_key
from .deps import runtime_of


def may_see(key: ApiKey, job: Job) -> bool:
    """An admin (or any caller without API_KEYS_FILE) sees every job; a key its own."""
    return key.sees_all() or job.owner == key.name


def may_see_owner(key: ApiKey, owner: str | None) -> bool:
    """The same for something known only by its owner's name (e.g. an output file's job)."""
    return key.sees_all() or (owner is not None and owner == key.name)


def not_found(job_id: str) -> HTTPException:
    return HTTPException(404, detail=f"no job with id {job_id!r} (unknown, or its result expired)")


async def visible_job(request: Request, job_id: str) -> Job | None:
    """The job if it exists and the caller may see it, else None (treat both alike)."""
    job = await runtime_of(request).store.get(job_id)
    if job is None or not may_see(current_key(request), job):
        return None
    return job


async def visible_job_or_404(request: Request, job_id: str) -> Job:
    job = await visible_job(request, job_id)
    if job is None:
        raise not_found(job_id)
    return job


def listing_owner(request: Request, asked: str | None) -> str | None:
    """The owner a list of jobs (or usage) is limited to: the caller's own name for a key
    that is not an admin (asking for another key is a 403), `asked` (None: all) for an admin."""
    key = current_key(request)
    if key.sees_all():
        return asked
    if asked is not None and asked != key.name:
        raise HTTPException(403, detail="key: only an admin key may ask for another key's jobs")
    return key.name
