"""The store API_CACHE names: memory (one process) or Redis (shared)."""

from __future__ import annotations

from ..settings import Settings
from .memory import MemoryJobStore
from .store import JobStore


def make_store(settings: Settings) -> JobStore:
    if settings.api_cache == "redis":
        from .redis import RedisJobStore, connect

        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        return RedisJobStore(connect(settings.redis_location, password), prefix=settings.redis_prefix,
                             result_ttl=settings.result_ttl, lease_seconds=settings.lease_seconds,
                             usage_ttl=settings.usage_ttl)
    return MemoryJobStore(usage_ttl=settings.usage_ttl, pack_after=settings.pack_queued_after,
                          pack_ended_after=settings.pack_ended_after)
