"""Reading a job from the Redis store: its record, its events past a number, or both in one
round trip (the record then at least as new as every event: a final_result event comes with
the final record); or neither from Redis for a job that just ended in this process, which
wrote all of it (redis_written.py). A part of RedisJobStore (redis.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from .events import JobEvent
from .redis_keys import RedisKeys
from .redis_records import decode_events
from .redis_results import RECORD_FIELDS, Record
from .redis_written import WrittenHere


class JobReads:
    def __init__(self, redis: Redis, keys: RedisKeys, written: WrittenHere):
        self._redis, self._keys, self._written = redis, keys, written

    async def record(self, job_id: str) -> Record:
        return Record.of(await self._redis.hmget(self._keys.job(job_id), *RECORD_FIELDS))

    async def events(self, job_id: str, after: int) -> list[JobEvent]:
        return decode_events(await self._redis.xrange(self._keys.events(job_id), min=f"{max(after, 0) + 1}-0",
                                                      max="+"))

    async def both(self, job_id: str, after: int) -> tuple[list[JobEvent], Record]:
        here = self._written.ended(job_id, after)
        if here is not None:
            return here
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._keys.events(job_id), min=f"{max(after, 0) + 1}-0", max="+")
            pipe.hmget(self._keys.job(job_id), *RECORD_FIELDS)
            entries, fields = await pipe.execute()
        return decode_events(entries), Record.of(fields)
