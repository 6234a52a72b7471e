"""The Redis client the store uses, from REDIS_URL (or its parts)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis


def connect(url: str, password: str | None = None) -> Redis:
    """A client from a URL; a password given apart never appears in the URL (or in logs)."""
    kw: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30}
    if password:
        kw["password"] = password
    # A pool that makes a caller wait for a free connection instead of failing it: redis-py's
    # default pool raises "Too many connections" past 100 callers at once, and one job's
    # followers (or a burst of requests) are easily more.
    return Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=100, timeout=20, **kw))
