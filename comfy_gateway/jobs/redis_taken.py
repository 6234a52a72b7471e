"""What a take brought back with the job: its delivery count and its record, read in the same
script as the take (redis_lua.py TAKE), kept for the taker's next steps so that starting a stage
costs one round trip instead of three. A follower's read of a job's events brings its record
along the same way (redis.py _look), for the get() that usually follows.

The count is the stage's count_delivery() answer for that take (asked once, right after it).
The record is what the next get() of the job returns instead of reading Redis again, if it
comes within MAX_AGE: it is the job as it was at the take, a moment earlier, which a read then
could have returned too; a change computed from it is checked against the stored version as
any other (redis_changes.py), so a newer write is never overwritten. A change this process
writes drops the job's kept record (`drop`): a get() after it must see it.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from .redis_results import Record

MAX_AGE = 1.0  # seconds a record read with a take stands in for a fresh read
_MAX_KEPT = 256  # takes whose taker never asked (e.g. stopped): forgotten oldest first


class JustTaken:
    def __init__(self) -> None:
        self._deliveries: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._records: OrderedDict[str, tuple[float, Record]] = OrderedDict()

    def put(self, stage: str, job_id: str, deliveries: int, record: Record | None) -> None:
        self._deliveries[(stage, job_id)] = deliveries
        if record is not None:
            self._records[job_id] = (time.monotonic(), record)
        for kept in (self._deliveries, self._records):
            while len(kept) > _MAX_KEPT:
                kept.popitem(last=False)

    def fresh(self, job_id: str, record: Record) -> None:
        """The job's record, just read with its events."""
        self._records[job_id] = (time.monotonic(), record)
        self._records.move_to_end(job_id)
        while len(self._records) > _MAX_KEPT:
            self._records.popitem(last=False)

    def drop(self, job_id: str | None) -> None:
        """The job changed (None: any job may have): what was kept of it is out of date."""
        if job_id is None:
            self._records.clear()
        else:
            self._records.pop(job_id, None)

    def delivery(self, stage: str, job_id: str) -> int | None:
        """The count the take of the job by the stage returned (once), or None."""
        return self._deliveries.pop((stage, job_id), None)

    def record(self, job_id: str) -> Record | None:
        """The job's record as read with the take (once, while fresh), or None."""
        got = self._records.pop(job_id, None)
        if got is None or time.monotonic() - got[0] > MAX_AGE:
            return None
        return got[1]
