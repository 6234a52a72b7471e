"""A real Redis for the tests: REDIS_URL (default redis://127.0.0.1:6379/0), each test under a
key prefix of its own, wiped afterwards."""

from __future__ import annotations

import os
import uuid

from comfy_gateway.jobs.redis import RedisJobStore, connect
from comfy_gateway.jobs.redis_keys import RedisKeys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def new_prefix() -> str:
    return f"cg-test:{uuid.uuid4().hex[:12]}:"


async def redis_store(prefix: str | None = None, **kw) -> RedisJobStore:
    store = RedisJobStore(connect(REDIS_URL), prefix=prefix or new_prefix(), **kw)
    await store.start()
    return store


async def wipe_prefix(prefix: str) -> None:
    r = connect(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=RedisKeys(prefix).pattern, count=1000)]
        for i in range(0, len(keys), 500):
            await r.delete(*keys[i:i + 500])
    finally:
        await r.aclose()
