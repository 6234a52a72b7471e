"""The Redis side of the job facts (see facts.py): schedules as sorted sets (RedisKeys.schedule:
member job id, score the due time), delivery counts as hashes (RedisKeys.deliveries: stage ->
times taken, expiring with the job). A part of RedisJobStore (redis.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from .facts import Schedule
from .redis_keys import RedisKeys

# Claim due members atomically: one sweeper per member, however many processes sweep.
# KEYS: the schedule   ARGV: now, now + hold, limit
CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return due
"""


class RedisSchedule:
    def __init__(self, redis: Redis, key: str):
        self._redis, self._key = redis, key
        self._claim = redis.register_script(CLAIM_DUE)

    async def put(self, job_id: str, due: float, only_new: bool = False) -> None:
        await self._redis.zadd(self._key, {job_id: due}, nx=only_new)

    async def drop(self, job_id: str) -> None:
        await self._redis.zrem(self._key, job_id)

    async def due(self, job_id: str) -> float | None:
        return await self._redis.zscore(self._key, job_id)

    async def claim_due(self, now: float, hold: float, limit: int = 100) -> list[str]:
        return list(await self._claim(keys=[self._key], args=[repr(now), repr(now + hold), limit]))

    async def next_due(self) -> float | None:
        first = await self._redis.zrange(self._key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None


class RedisFacts:
    """The schedules and delivery counts of one deployment (the store's `schedule()` and
    `count_delivery()`)."""

    def __init__(self, redis: Redis, keys: RedisKeys, key_ttl: int):
        self._redis, self._keys, self._key_ttl = redis, keys, key_ttl
        self._schedules: dict[str, RedisSchedule] = {}

    def schedule(self, name: str) -> Schedule:
        if name not in self._schedules:
            self._schedules[name] = RedisSchedule(self._redis, self._keys.schedule(name))
        return self._schedules[name]

    async def count_delivery(self, stage: str, job_id: str) -> int:
        key = self._keys.deliveries(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, stage, 1)
            pipe.expire(key, self._key_ttl)
            count, _ = await pipe.execute()
        return int(count)
