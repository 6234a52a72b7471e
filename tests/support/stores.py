"""Fixtures for the store suites: every store implementation (`store`: memory, and a real Redis
under a key prefix of its own per test), and two Redis stores sharing one prefix as two gateway
processes do (`two_processes`, `long_leases`). Test modules import them by name."""

from __future__ import annotations

import pytest

from comfy_gateway.jobs.memory import MemoryJobStore

from .redis import new_prefix, redis_store, wipe_prefix


def watchers_of(store) -> int:
    """How many follows of jobs the store has registered (its events watchers)."""
    return len(store._watchers if isinstance(store, MemoryJobStore) else store._notify.watchers)


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryJobStore(pack_after=0)  # every waiting job packed: the path under test
        return
    s = await redis_store()
    try:
        yield s
    finally:
        await wipe_prefix(s.prefix)
        await s.close()


async def _redis_pair(lease_seconds: float):
    """Two Redis stores on one prefix with distinct consumers, as two gateway processes are."""
    prefix = new_prefix()
    a = await redis_store(prefix, lease_seconds=lease_seconds)
    b = await redis_store(prefix, lease_seconds=lease_seconds)
    yield a, b
    await wipe_prefix(prefix)
    await a.close()
    await b.close()


@pytest.fixture
async def two_processes():
    """Two processes whose leases run out after 1 s (take-over tests stay quick)."""
    async for pair in _redis_pair(1.0):
        yield pair


@pytest.fixture
async def long_leases():
    """Two processes with leases of 2 s: long enough that renewing never races the clock."""
    async for pair in _redis_pair(2.0):
        yield pair
