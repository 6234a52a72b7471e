"""Writing a job's progress frames to the Redis store: a part of RedisJobStore (redis.py).

One script (redis_lua.py PROGRESS) writes the progress field and the events: the job record is
neither read nor encoded, and its version does not move (a progress frame never conflicts with
a change of state). In order per job; frames that come while the job's last ones are on their
way (a burst of them) go together in the next call, each an event of its own.
"""

from __future__ import annotations

import time
from typing import Any

from .job_locks import JobLocks
from .model import Progress
from .redis_keys import RedisKeys
from .redis_notify import Notifier
from .redis_taken import JustTaken
from .redis_written import WrittenHere


class ProgressWriter:
    def __init__(self, script: Any, keys: RedisKeys, notify: Notifier, locks: JobLocks, taken: JustTaken,
                 written: WrittenHere):
        self._script, self._keys, self._notify, self._locks = script, keys, notify, locks
        self._taken, self._written = taken, written
        self._waiting: dict[str, list[Progress]] = {}  # frames waiting for a job's writer

    async def write(self, job_id: str, progress: Progress) -> None:
        waiting = self._waiting.get(job_id)
        if waiting is not None:
            waiting.append(progress)  # the writer already busy with this job takes it along
            return
        waiting = self._waiting[job_id] = [progress]
        try:
            # The job's changes of state wait for these frames, and these for them.
            async with self._locks.hold(job_id):
                while waiting:
                    frames = [frame.model_dump_json() for frame in waiting]
                    waiting.clear()
                    self._taken.drop(job_id)
                    now = repr(time.time())
                    seq = await self._script(
                        keys=[self._keys.job(job_id), self._keys.events(job_id)],
                        args=[now, self._keys.events_channel, job_id, self._notify.tag, *frames])
                    if seq and int(seq) > 0:
                        self._written.progressed(job_id, int(seq), frames, float(now))
                        self._notify.local_event(job_id, "progress")
        finally:
            del self._waiting[job_id]
