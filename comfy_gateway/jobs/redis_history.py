"""The Redis store's history (/jobs), usage ledger (/usage), and the sweep of ended jobs out of
both. A part of RedisJobStore.

History reads the index of created jobs (every key's, or one key's: RedisKeys.created, created_by) newest
first, in batches, and filters the records; usage reads the `usage` stream, whose entries the
script ending a job writes (redis_lua.py UPDATE). Sweeping forgets the jobs that ended before
a time (redis_lua.py EXPIRE_ENDED), once each however many processes sweep at the same moment.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from .history import HistoryPage, HistoryQuery
from .redis_keys import RedisKeys
from .redis_records import decode_job
from .usage import UsageRecord

BATCH = 200
SLACK = 60.0  # seconds of clock difference allowed between Redis and a gateway process


class RedisHistory:
    """A part of RedisJobStore: its `history()`, `usage()` and `expire()`."""

    def __init__(self, redis: Redis, keys: RedisKeys, expire_ended: Any):
        self.redis, self._keys, self._expire_ended = redis, keys, expire_ended

    async def expire(self, older_than: float) -> int:
        """Forget the jobs that ended before `older_than` (epoch seconds): how many."""
        k = self._keys
        old = await self.redis.zrangebyscore(k.ended, "-inf", older_than)
        gone = 0
        for i in range(0, len(old), 500):
            gone += int(await self._expire_ended(
                keys=[k.ended, k.created, k.counts],
                args=[k.job(""), k.events(""), k.deliveries(""), k.created_by(""), *old[i:i + 500]]))
        return gone

    async def history(self, query: HistoryQuery) -> HistoryPage:
        index = self._keys.created if query.owner is None else self._keys.created_by(query.owner)
        top = "+inf" if query.after is None else repr(query.after[0])
        if query.until is not None and (query.after is None or query.until <= query.after[0]):
            top = f"({query.until!r}"
        bottom = "-inf" if query.since is None else repr(query.since)
        page, offset, seen = HistoryPage(), 0, 0
        while seen < query.scan:
            batch = await self.redis.zrevrangebyscore(index, top, bottom, start=offset, num=BATCH, withscores=True)
            if not batch:
                return page  # the index is exhausted: no next page
            offset += len(batch)
            cores = await self._cores([job_id for job_id, _ in batch])
            gone = []
            for (job_id, created), core in zip(batch, cores):
                core = (core[0], core[1]) if core[0] is not None else None
                if not query.in_range(created, job_id):
                    continue  # at the cursor's own score, at or before its place
                if page.next_after is not None and (created, job_id) >= page.next_after:
                    continue  # seen already: jobs created meanwhile shifted the batches
                seen += 1
                page.next_after = (created, job_id)
                if core is None:
                    gone.append(job_id)  # expired under us; the sweep forgets it too
                    continue
                job = decode_job(*core, None, None)
                if query.admits(job):
                    page.jobs.append(job)
                    if len(page.jobs) >= query.limit:
                        return page
                if seen >= query.scan:
                    break
            if gone:
                await self.redis.zrem(index, *gone)
        return page

    async def _cores(self, job_ids: list[str]) -> list[list[str | None]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self._keys.job(job_id), "core", "progress")
            return await pipe.execute()

    async def usage(self, since: float | None, until: float | None) -> list[UsageRecord]:
        # Entry ids are Redis's clock when the job ended, the records carry the gateway's: read
        # a minute either side by id, then keep exactly the records that ended in the span.
        low = "-" if since is None else str(max(int((since - SLACK) * 1000), 0))
        high = "+" if until is None else str(max(int((until + SLACK) * 1000), 0))
        records: list[UsageRecord] = []
        while True:
            entries = await self.redis.xrange(self._keys.usage, low, high, count=1000)
            for _, fields in entries:
                r = UsageRecord.from_json(orjson.loads(fields["r"]))
                if (since is None or r.finished_at >= since) and (until is None or r.finished_at < until):
                    records.append(r)
            if len(entries) < 1000:
                return records
            low = "(" + entries[-1][0]
