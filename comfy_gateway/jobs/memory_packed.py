"""A job waiting in one of the memory store's queues, kept as compressed JSON until a worker
takes it.

Measured in a gateway with 10,000 jobs of a 52-node workflow queued (bench `mem-queue`):
as Python objects a waiting job held its request (~24 KiB of dicts) and the prompt built
from it (~22 KiB), both of a ~5 KB JSON workflow; packed, the two together take under 1 KB
(they are near copies of each other, which zlib's window sees). The few fields that listings,
history filters, priorities and the sweeper read stay outside, as plain attributes.
"""

from __future__ import annotations

import zlib

import orjson

from .model import Job

# Kept apart from the pydantic dump: orjson reads these plain JSON trees several times faster
# than pydantic validates them as dict[str, Any] (what the Redis store does too).
_APART = {"request", "workflow"}


class PackedJob:
    __slots__ = ("id", "status", "created_at", "finished_at", "owner", "priority", "_blob")

    def __init__(self, job: Job, blob: bytes) -> None:
        self.id, self.status, self.created_at = job.id, job.status, job.created_at
        self.finished_at, self.owner, self.priority = job.finished_at, job.owner, job.priority
        self._blob = blob

    @classmethod
    def of(cls, job: Job) -> PackedJob | None:
        """The job packed; None if it holds what JSON cannot (it then stays as it is)."""
        try:
            apart = orjson.dumps((job.request, job.workflow))
        except (TypeError, orjson.JSONEncodeError):
            return None
        core = job.model_dump_json(exclude=_APART).encode()
        return cls(job, zlib.compress(core + b"\n" + apart, 1))

    def unpack(self) -> Job:
        """A new Job equal to the one packed (each call its own)."""
        core, _, apart = zlib.decompress(self._blob).partition(b"\n")
        job = Job.model_validate_json(core)
        job.request, job.workflow = orjson.loads(apart)
        return job

    def __repr__(self) -> str:
        return f"PackedJob({self.id!r}, {self.status.value}, {len(self._blob)} bytes)"
