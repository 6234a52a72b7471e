"""Which jobs this process is told of, as far as it knows.

A job's record lists the processes to tell of its events (`heard`, redis_lua_parts.py HEAR_FN):
each process that created, changed or took it is listed by that script, and a process whose
follower is about to wait for a job it has not written asks to be listed (HEAR). Kept here, the
jobs this process was listed for lately spare its followers that round trip: the sync wait of
the job it just created, the watch of the job it just took.

A mark is trusted for a while only (`trust_for`, at most RESULT_TTL): a request_id names the same
job id again once the job it named has expired, and the new job's record lists nobody yet. A
process that ends a job drops its mark (an ended job tells nothing more), so a kept mark is one
of a job that was live when this process last wrote it: it cannot have expired, and its id been
taken again, before RESULT_TTL has passed; nor is a job that had ended when HEAR listed this
process kept (its expiry is nearer). An older mark is asked again (HEAR is idempotent).
"""

from __future__ import annotations

import time
from collections import OrderedDict

TRUST_FOR = 30.0  # seconds a mark stands for a HEAR (the followers that matter start at once)
_MAX_KEPT = 10_000


class Heard:
    def __init__(self, trust_for: float = TRUST_FOR):
        self._trust_for = trust_for
        self._marks: OrderedDict[str, float] = OrderedDict()  # job id -> when it was listed

    def listed(self, job_id: str) -> None:
        """A script of this process listed it (a write or a take of a live job, or HEAR)."""
        now = time.monotonic()
        self._marks[job_id] = now
        self._marks.move_to_end(job_id)
        while self._marks and (len(self._marks) > _MAX_KEPT
                               or now - next(iter(self._marks.values())) > self._trust_for):
            self._marks.popitem(last=False)

    def forget(self, job_id: str) -> None:
        """It ended here, or is gone: a follower here that waits for it asks again."""
        self._marks.pop(job_id, None)

    def knows(self, job_id: str) -> bool:
        at = self._marks.get(job_id)
        return at is not None and time.monotonic() - at <= self._trust_for
