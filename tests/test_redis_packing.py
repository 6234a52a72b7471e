"""The store's Redis client packs commands in C (hiredis), not argument by argument in Python as
redis-py's asyncio connection does: that packing was about a sixth of the instructions of a
job's store calls. What goes on the wire must stay byte for byte what redis-py would send, and
what redis-py refuses must still be refused the same way."""

from __future__ import annotations

import sys

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from comfy_gateway.jobs.redis import connect

from .support.redis import REDIS_URL

# What the store sends: names, ids, JSON with any text, counts, flags, times as repr(float),
# priorities, and what other callers may send (bytes, a command of two words, buffers).
ARGS = [
    ("EVALSHA", "0123abcd", 2, "{cg}:job:é-中", "{cg}:ev:x", '{"message":"ünïcode ✓","n":[1,2]}', -1, 0, 1,
     1764280000.123456, 1.5, 3.0, 1e20, 1e-7, float("inf"), 12345678901234567890, "", b"\x00\xff raw"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "gateway"),
    ("SET", bytearray(b"buffer"), memoryview(b"view")),
]


def _ours() -> Connection:
    return connect(REDIS_URL).connection_pool.connection_class(host="127.0.0.1")


@pytest.mark.parametrize("args", ARGS, ids=lambda a: str(a[0]))
def test_commands_are_packed_as_redis_py_packs_them(args):
    ours = b"".join(bytes(part) for part in _ours().pack_command(*args))
    theirs = b"".join(bytes(part) for part in Connection(host="127.0.0.1").pack_command(*args))
    assert ours == theirs


@pytest.mark.parametrize("bad", [None, True, {"a": 1}, [1]], ids=repr)
def test_what_redis_py_refuses_is_refused_alike(bad):
    with pytest.raises(DataError):
        _ours().pack_command("SET", "key", bad)


def test_packing_a_change_runs_no_python_per_argument():
    args = ("EVALSHA", "0123abcd", 9, *(f"{{cg}}:key:{i}" for i in range(9)), *(f"value {i}" for i in range(30)))
    conn = _ours()
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(frame.f_code.co_name) if event == "call" else None)
    try:
        conn.pack_command(*args)
    finally:
        sys.setprofile(None)
    # redis-py's Python packer calls its encoder once per argument (40 here).
    assert len(calls) < 5, calls


async def test_arguments_reach_a_script_unchanged():
    redis = connect(REDIS_URL)
    try:
        echo = redis.register_script("return ARGV")
        sent = ['{"m":"ünïcode ✓ 中"}', -7, 1764280000.123456, 1e20, "", "two words"]
        assert await echo(keys=["{cg-test}:none"], args=sent) == [
            '{"m":"ünïcode ✓ 中"}', "-7", repr(1764280000.123456), repr(1e20), "", "two words"]
    finally:
        await redis.aclose()
