"""The Redis side of the job facts (see facts.py): schedules as sorted sets under
P sched:<name> (member job id, score the due time), delivery counts as P dlv:<id> (hash:
stage -> times taken, expiring with the job). Mixed into RedisJobStore."""

from __future__ import annotations

from redis.asyncio import Redis

from .facts import Schedule

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
    """Needs `redis`, `prefix` and `key_ttl` from the store."""

    redis: Redis
    prefix: str
    key_ttl: int

    def schedule(self, name: str) -> Schedule:
        made: dict[str, RedisSchedule] = self.__dict__.setdefault("_schedules", {})
        if name not in made:
            made[name] = RedisSchedule(self.redis, self._sched_key(name))
        return made[name]

    def _sched_key(self, name: str) -> str:
        return f"{self.prefix}sched:{name}"

    @property
    def _deadlines_key(self) -> str:
        """The "deadlines" schedule, which a job joins when created and leaves when it ends,
        in the same scripts (redis_lua.py CREATE, UPDATE)."""
        return self._sched_key("deadlines")

    async def count_delivery(self, stage: str, job_id: str) -> int:
        key = f"{self.prefix}dlv:{job_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, stage, 1)
            pipe.expire(key, self.key_ttl)
            count, _ = await pipe.execute()
        return int(count)
