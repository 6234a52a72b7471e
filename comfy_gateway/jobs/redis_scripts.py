"""The store's Lua scripts, sent on a few connections kept for them.

Every step of a job is a script call, and a fast job's calls are on its critical path.
redis-py's command path costs about as much CPU as the call itself: a checkout from the
blocking pool (a condition), the retry wrapper, operation metrics. Measured alone, an EVALSHA
costs 111 µs of CPU through it and 61 µs sent and read on a connection held. So a script call
takes a kept connection from a free list, checks it as the pool checks its own (one Redis
closed, say by a restart, is opened again before the send), sends, reads, and puts it back.

A script Redis does not know (a restarted Redis, SCRIPT FLUSH) never ran: it goes redis-py's
way, which loads it and runs it. So does a call while every kept connection is in use. A
connection that fails during a call raises, as redis-py's own path does with this client (no
retries): whether the script ran is unknown, and running it again could apply it twice. A
connection left mid-reply (its caller cancelled while it waited) is closed by redis-py's read
itself and opened again on its next use: no reply is ever read by the wrong caller.
"""

from __future__ import annotations

from typing import Any, Sequence

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

KEEP = 8  # kept connections per store: more calls at once than this go through the pool


class ScriptCalls:
    """The kept connections of one store, and its scripts (`register`)."""

    def __init__(self, redis: Redis, keep: int = KEEP):
        self._redis, self._keep = redis, keep
        self._free: list[Any] = []  # connections not in use (the last one put back first)
        self._made: list[Any] = []

    def register(self, source: str) -> Script:
        return Script(self, self._redis.register_script(source))

    def _take(self) -> Any | None:
        if self._free:
            return self._free.pop()
        if len(self._made) >= self._keep:
            return None
        conn = self._redis.connection_pool.make_connection()  # connects on its first send
        self._made.append(conn)
        return conn

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        conn = self._take()
        if conn is not None:
            try:
                await _ready(conn)
                await conn.send_packed_command(conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args))
                return await conn.read_response()
            except NoScriptError:
                pass  # it did not run: redis-py's way below loads it and runs it
            finally:
                self._free.append(conn)
        return await script(keys=keys, args=args)

    async def close(self) -> None:
        made, self._made, self._free = self._made, [], []
        for conn in made:
            await conn.disconnect()


async def _ready(conn: Any) -> None:
    """Connected, and nothing waiting on the socket (as redis-py's pool checks a connection it
    hands out): one closed by Redis, or holding a stray reply, is opened afresh."""
    await conn.connect()  # nothing to do when connected
    try:
        if await conn.can_read():
            raise RedisConnectionError("connection has data")
    except (RedisConnectionError, RedisTimeoutError, OSError):
        await conn.disconnect()
        await conn.connect()


class Script:
    """One of the store's scripts: `await script(keys=[...], args=[...])`, as redis-py's."""

    def __init__(self, calls: ScriptCalls, script: AsyncScript):
        self._calls, self.script = calls, script

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self._calls.call(self.script, keys, args)
