"""The Redis client the store uses, from REDIS_URL (or its parts)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.connection import HiredisRespSerializer
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis  # declared (redis[hiredis]); without it commands are packed by redis-py
except ImportError:  # pragma: no cover
    hiredis = None


def connect(url: str, password: str | None = None) -> Redis:
    """A client from a URL; a password given apart never appears in the URL (or in logs)."""
    kw: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30}
    if password:
        kw["password"] = password
    # A pool that makes a caller wait for a free connection instead of failing it: redis-py's
    # default pool raises "Too many connections" past 100 callers at once, and one job's
    # followers (or a burst of requests) are easily more.
    pool = BlockingConnectionPool.from_url(url, max_connections=100, timeout=20, **kw)
    base = pool.connection_class  # TCP, TLS or a Unix socket, as the URL says
    mixins: tuple[type, ...] = ((HiredisPack,) if hiredis is not None else ()) + \
        ((CancelSafeSend,) if sys.version_info < (3, 12) else ())
    if mixins:
        pool.connection_class = type(f"Gateway{base.__name__}", (*mixins, base), {})
    return Redis.from_pool(pool)


class HiredisPack:
    """Commands packed by hiredis, in C, as redis-py's own synchronous connection does; its
    asyncio connection packs them in Python, argument by argument: about a sixth of the
    instructions of a job's store calls (an UPDATE has about 40 arguments)."""

    _packer = HiredisRespSerializer()  # redis-py's own, for what hiredis refuses as it comes

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (" " in first) if isinstance(first, str) else (b" " in first):
            return self._packer.pack(*args)  # "SCRIPT LOAD": split into words, as redis-py does
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a bytearray or memoryview: converted, or a DataError as in redis-py
            return self._packer.pack(*args)


class CancelSafeSend:
    """redis-py bounds each send by socket_timeout with asyncio.wait_for, which before Python
    3.12 swallows a cancel that comes as the send completes (CPython gh-86296): the command then
    returns normally in a task that was told to stop, and a loop in that task runs on (seen
    here: a store sweeper whose stop never ended, about one stop in four right after its start;
    about 30 % of cancels landing during a call were lost). The same bound from asyncio.timeout,
    which passes every cancel on. Reads are bounded by asyncio.timeout in redis-py already."""

    socket_timeout: float | None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        limit = self.socket_timeout
        if not limit:
            return await super().send_packed_command(command, check_health)  # type: ignore[misc]
        self.socket_timeout = None  # no wait_for in redis-py's send; this connection is ours alone
        try:
            async with asyncio.timeout(limit):
                await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = limit
