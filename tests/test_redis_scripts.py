"""The store's scripts go on connections kept for them (redis_scripts.py), and every call gets
its own answer whatever happens around it: a script Redis does not know yet, a connection Redis
closed, a caller cancelled while its reply was on the way, more callers than kept connections,
a script that fails. A call whose reply is lost raises and is not run again. Real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from comfy_gateway.jobs.redis_connect import connect
from comfy_gateway.jobs.redis_scripts import ScriptCalls

from .support.redis import REDIS_URL
from .support.settling import eventually

ECHO = "return ARGV[1]"
# Counts to ARGV[1] before answering ARGV[2]: Redis is busy with it for a while.
BUSY = "local i = 0 while i < tonumber(ARGV[1]) do i = i + 1 end return ARGV[2]"


@pytest.fixture
async def calls():
    redis = connect(REDIS_URL)
    calls = ScriptCalls(redis, keep=2)
    yield calls
    await calls.close()
    await redis.aclose()


def _fresh(source: str) -> str:
    """The script under a text of its own, so that Redis has never loaded it."""
    return f"{source} -- {uuid.uuid4().hex}"


async def test_calls_go_on_kept_connections_not_through_the_client(calls):
    echo = calls.register(ECHO)
    assert await echo(args=["first"]) == "first"  # the first call loads it (NOSCRIPT)

    async def refused(*args, **kw):
        raise AssertionError("went through redis-py's command path")
    calls._redis.evalsha = refused
    assert [await echo(keys=["{k}a"], args=[f"n{i}"]) for i in range(5)] == [f"n{i}" for i in range(5)]


async def test_a_script_redis_does_not_know_is_loaded(calls):
    echo = calls.register(_fresh(ECHO))
    assert await echo(args=["hello"]) == "hello"
    assert await calls._redis.script_exists(echo.script.sha) == [True]


async def test_a_connection_redis_closed_is_opened_again(calls):
    echo = calls.register(ECHO)
    assert await echo(args=["before"]) == "before"
    name = f"cg-kill-{uuid.uuid4().hex[:8]}"
    assert await echo(args=["named"]) == "named"
    # Name the kept connection (a script cannot), then have Redis close it.
    conn = calls._free[-1]
    await conn.send_command("CLIENT", "SETNAME", name)
    assert await conn.read_response() == "OK"
    ids = [c["id"] for c in await calls._redis.client_list() if c.get("name") == name]
    assert len(ids) == 1
    await calls._redis.client_kill_filter(_id=ids[0])
    await eventually(conn.can_read, 5.0, "the close reached this process")  # as after a restart
    assert await echo(args=["after"]) == "after"


async def test_a_call_whose_reply_is_lost_raises_and_does_not_run_again(calls):
    key = f"{{cg-test-{uuid.uuid4().hex[:8]}}}n"
    incr = calls.register("return redis.call('INCR', KEYS[1])")
    try:
        assert await incr(keys=[key]) == 1
        conn = calls._free[-1]

        async def lost(*args, **kw):
            await type(conn).read_response(conn, *args, **kw)
            raise RedisConnectionError("the connection broke before the reply came (injected)")
        conn.read_response = lost
        with pytest.raises(RedisConnectionError):
            await incr(keys=[key])
        del conn.read_response
        assert await calls._redis.get(key) == "2"  # it ran once, and only once
        assert await incr(keys=[key]) == 3
    finally:
        await calls._redis.delete(key)


async def test_a_cancelled_call_leaves_no_reply_for_the_next(calls):
    busy, echo = calls.register(BUSY), calls.register(ECHO)
    assert await echo(args=["warm"]) == "warm"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await busy(args=[5_000_000, "the cancelled call's"])
    # The same kept connection serves next (the last one put back).
    assert await echo(args=["mine"]) == "mine"
    assert await echo(args=["mine too"]) == "mine too"


async def test_more_callers_than_kept_connections(calls):
    echo = calls.register(ECHO)
    answers = await asyncio.gather(*(echo(args=[f"caller {i}"]) for i in range(20)))
    assert answers == [f"caller {i}" for i in range(20)]
    assert len(calls._made) == 2


async def test_a_failing_script_raises_and_its_connection_serves_on(calls):
    fails, echo = calls.register("return redis.error_reply('no such thing')"), calls.register(ECHO)
    with pytest.raises(ResponseError, match="no such thing"):
        await fails()
    assert await echo(args=["still here"]) == "still here"
    assert len(calls._made) == 1
