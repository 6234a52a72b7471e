"""What the stores keep per API key (issue 15): a limit on a key's unfinished jobs, the history
a key may page through, and the usage ledger. Both stores, as in test_store.py."""

from __future__ import annotations

import time

import pytest

from comfy_gateway.jobs.history import HistoryQuery, decode_cursor, encode_cursor
from comfy_gateway.jobs.model import Job, JobStatus, OutputFile
from comfy_gateway.jobs.store import KeyQueueFull, QueueFull
from comfy_gateway.jobs.usage import add_up

from .support.redis import redis_store, wipe_prefix
from .support.stores import store, two_processes  # noqa: F401  (fixtures: both stores)


async def test_a_key_over_its_limit_is_refused_while_another_is_served(store):  # noqa: F811
    for i in range(2):
        await store.create(Job(id=f"a{i}", owner="alice"), max_owned=2)
    with pytest.raises(KeyQueueFull) as refused:
        await store.create(Job(id="a2", owner="alice"), max_owned=2)
    assert isinstance(refused.value, QueueFull) and "alice" in str(refused.value)
    assert await store.get("a2") is None
    await store.create(Job(id="b0", owner="bob"), max_owned=2)  # bob is served meanwhile
    await store.update("a0", status=JobStatus.cancelled, message="x")  # an ended job frees a place
    await store.create(Job(id="a2", owner="alice"), max_owned=2)
    with pytest.raises(KeyQueueFull):
        await store.create(Job(id="a3", owner="alice"), max_owned=2)


async def test_history_filters_by_owner_status_and_time_and_pages_without_repeats(store):  # noqa: F811
    t0 = time.time()
    for i in range(7):
        job = Job(id=f"j{i}", owner="alice" if i % 2 == 0 else "bob", created_at=t0 + i)
        await store.create(job)
    await store.update("j2", status=JobStatus.failed, message="x")
    await store.update("j4", status=JobStatus.failed, message="x")

    async def ids(**kw) -> list[str]:
        return [j.id for j in (await store.history(HistoryQuery(**kw))).jobs]

    assert await ids(limit=50) == [f"j{i}" for i in range(6, -1, -1)]
    assert await ids(owner="alice", limit=50) == ["j6", "j4", "j2", "j0"]
    assert await ids(owner="alice", statuses=frozenset({"failed"})) == ["j4", "j2"]
    assert await ids(since=t0 + 2, until=t0 + 5) == ["j4", "j3", "j2"]
    pages, after = [], None
    while True:
        page = await store.history(HistoryQuery(owner="alice", limit=3, after=after))
        pages.append([j.id for j in page.jobs])
        if page.next_after is None:
            break
        after = decode_cursor(encode_cursor(page.next_after))
    assert [j for p in pages for j in p] == ["j6", "j4", "j2", "j0"] and pages[0] == ["j6", "j4", "j2"]


async def test_usage_is_recorded_once_per_ended_job(store):  # noqa: F811
    t0 = time.time()
    await store.create(Job(id="u0", owner="alice"))
    await store.update("u0", status=JobStatus.preprocessing, marks={"preprocess_started": t0 + 1})
    await store.update("u0", status=JobStatus.generating, marks={"preprocess_finished": t0 + 2})
    await store.update("u0", marks={"generation_started": t0 + 3})
    await store.update("u0", status=JobStatus.postprocessing, marks={"generation_finished": t0 + 7.5})
    out = [OutputFile(filename="a.png", type="output", node_id="9", output_type="images", size_bytes=100),
           OutputFile(filename="b.png", type="output", node_id="9", output_type="images", size_bytes=23)]
    await store.update("u0", status=JobStatus.completed, output=out, marks={"postprocess_started": t0 + 8})
    await store.update("u0", status=JobStatus.failed, message="too late")  # dropped: ended is final
    await store.create(Job(id="u1", owner="bob"))
    await store.update("u1", status=JobStatus.cancelled, message="x")
    sums = add_up(await store.usage(None, None))
    assert set(sums) == {"alice", "bob"}
    alice = sums["alice"]
    assert alice["jobs"] == {"completed": 1, "failed": 0, "cancelled": 0, "timed_out": 0, "total": 1}
    assert alice["gpu_seconds"] == 4.5 and alice["output_bytes"] == 123
    assert alice["queue_seconds"] == pytest.approx(1 + 1 + 0.5, abs=0.01)
    assert sums["bob"]["jobs"]["cancelled"] == 1
    assert add_up(await store.usage(time.time() + 60, None)) == {}


async def test_usage_outlives_the_process_that_wrote_it(two_processes):  # noqa: F811
    a, _ = two_processes
    await a.create(Job(id="j", owner="alice"))
    await a.update("j", status=JobStatus.failed, message="x")
    later = await redis_store(a.prefix)  # a process started afterwards
    try:
        assert add_up(await later.usage(None, None))["alice"]["jobs"]["failed"] == 1
        assert [j.id for j in (await later.history(HistoryQuery(owner="alice"))).jobs] == ["j"]
        await later.expire(time.time() + 1)
        assert (await later.history(HistoryQuery(owner="alice"))).jobs == []
        assert await later.redis.exists(later.keys.created_by("alice")) == 0
        assert add_up(await later.usage(None, None))["alice"]["jobs"]["failed"] == 1  # kept longer
    finally:
        await later.close()
    await wipe_prefix(a.prefix)
