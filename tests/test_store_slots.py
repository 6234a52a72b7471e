"""Redis Cluster readiness of the key layout: every key the Redis store writes for a job, over
its whole life, maps to one hash slot, so that each of its scripts touches one slot. The slot is
computed as Redis Cluster does (CRC16/XMODEM of the hash tag, mod 16384), since the test Redis
is not a cluster and has no CLUSTER KEYSLOT."""

from __future__ import annotations

import asyncio
import binascii
import time

from comfy_gateway.jobs.model import Job, JobStatus, Progress
from comfy_gateway.jobs.redis import connect

from .support.redis import REDIS_URL, new_prefix, redis_store, wipe_prefix


def key_slot(key: str) -> int:
    """Redis Cluster's HASH_SLOT: only the part between the first '{' and the next '}' counts,
    when there is such a part and it is not empty."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return binascii.crc_hqx(key.encode(), 0) % 16384


async def test_every_key_of_a_jobs_life_is_in_one_slot():
    prefix = new_prefix()  # "cg-test:<hex>:": every key built from it carries <hex>
    unique = prefix.split(":")[1]
    a, b = await redis_store(prefix), await redis_store(prefix, lease_seconds=0.0)  # b takes over at once
    watcher = connect(REDIS_URL)
    seen: set[str] = set()

    async def look() -> None:
        # Whatever the layout, a key made from the prefix contains its unique part.
        seen.update([k async for k in watcher.scan_iter(match=f"*{unique}*", count=1000)])

    try:
        await a.create(Job(id="j", owner="alice", priority=1, deadline=time.time() + 600))
        await look()
        assert await asyncio.wait_for(a.dequeue("preprocess"), 5) == "j"
        await a.update("j", status=JobStatus.preprocessing)
        await look()
        await a.advance("j", "generation", status=JobStatus.generating)  # hand-over
        await look()
        assert await asyncio.wait_for(b.dequeue("generation"), 5) == "j"
        await a.set_progress("j", Progress(value=1, max=2))
        assert await b.count_delivery("generation", "j") == 1
        await b.schedule("outbox").put("j", time.time() + 60)
        await look()
        await b.advance("j", "postprocess", status=JobStatus.postprocessing)
        assert await asyncio.wait_for(b.dequeue("postprocess"), 5) == "j"
        await b.update("j", status=JobStatus.completed)  # ends: usage, leaves the deadlines
        await look()
        await b.schedule("outbox").drop("j")
        await b.expire(time.time() + 1)
        await look()

        names = {k[len(a.keys.base):].split(":")[0] for k in seen if k.startswith(a.keys.base)}
        # The whole life was seen: records, events, queues, leases, indexes, tallies, facts.
        assert {"job", "ev", "wait", "q", "qid", "qseq", "ended", "created", "counts", "active", "usage",
                "sched", "dlv"} <= names, sorted(seen)
        assert {key_slot(k) for k in seen} == {key_slot(a.keys.base)}, sorted(seen)
    finally:
        await wipe_prefix(prefix)
        await a.close()
        await b.close()
    try:
        seen.clear()
        await look()
        assert seen == set()  # the tests' wipe follows the layout: nothing left behind
    finally:
        await watcher.aclose()


def test_the_slot_is_computed_as_redis_cluster_does():
    # The examples of the CLUSTER KEYSLOT documentation, and the specification's hash tag rules.
    assert key_slot("somekey") == 11058 and key_slot("foo{hash_tag}") == 2515
    assert key_slot("{user1000}.following") == key_slot("user1000")
    assert key_slot("foo{}{bar}") != key_slot("bar")  # an empty tag: the whole key counts
