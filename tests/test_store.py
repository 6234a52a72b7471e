"""The store protocol's behaviour. Parametrized over both implementations (memory, and a real
Redis at REDIS_URL, default 127.0.0.1:6379, under a key prefix of its own per test) so every
store passes the same suite."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from comfy_gateway.jobs.following import Tick
from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import InvalidTransition, Job, JobStatus, Progress
from comfy_gateway.jobs.store import QueueFull

from .support.stores import long_leases, store, two_processes  # noqa: F401  (fixtures)


async def test_create_get_and_duplicate(store):
    job = await store.create(Job(id="a", request={"x": 1}))
    assert job.status is JobStatus.queued
    assert (await store.get("a")).request == {"x": 1}
    assert await store.get("nope") is None
    with pytest.raises(KeyError):
        await store.create(Job(id="a"))
    assert await store.position("preprocess", "a") == 0


async def test_queue_full_leaves_queued_jobs_alone(store):
    for i in range(3):
        await store.create(Job(id=f"j{i}"), max_waiting=3)
    with pytest.raises(QueueFull):
        await store.create(Job(id="j3"), max_waiting=3)
    assert await store.get("j3") is None
    assert (await store.queue_sizes())["preprocess"] == 3
    assert [await store.dequeue("preprocess") for _ in range(3)] == ["j0", "j1", "j2"]


async def test_state_machine_forward_only_and_terminal_is_final(store):
    await store.create(Job(id="a"))
    with pytest.raises(InvalidTransition):
        await store.update("a", status=JobStatus.postprocessing)
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("a", status=JobStatus.cancelled, message="cancelled by client")
    job = await store.update("a", status=JobStatus.generating, message="late news")
    assert job.status is JobStatus.cancelled and job.message == "cancelled by client"
    await store.set_progress("a", Progress(node="1"))
    assert (await store.get("a")).progress is None
    events = await store.events_after("a", 0)
    assert [e.type for e in events] == ["status", "status", "final_result"]
    assert events[-1].status == "cancelled"


async def test_events_are_numbered_and_resumable(store):
    await store.create(Job(id="a"))
    await store.update("a", status=JobStatus.preprocessing, message="p")
    await store.set_progress("a", Progress(node="3", value=2, max=10))
    events = await store.events_after("a", 0)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.seq for e in await store.events_after("a", 2)] == [3]
    assert events[2].progress["node"] == "3" and events[2].progress["value"] == 2


class _CountingEvents(dict):
    """The memory store's event lists, counting every look at one job's."""

    def __init__(self, data, job_id):
        super().__init__(data)
        self.job_id, self.looks = job_id, 0

    def get(self, key, default=None):
        self.looks += key == self.job_id
        return super().get(key, default)

    def __getitem__(self, key):
        self.looks += key == self.job_id
        return super().__getitem__(key)


class _CountingRedis:
    """The Redis store's client, counting every command that names one job's keys."""

    def __init__(self, real, job_id):
        self.real, self.job_id, self.looks = real, job_id, 0

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr) or name in ("pipeline", "pubsub"):
            return attr

        def call(*args, **kwargs):
            self.looks += any(isinstance(a, str) and self.job_id in a for a in args)
            return attr(*args, **kwargs)
        return call


def _count_looks(store, job_id: str):
    if isinstance(store, MemoryJobStore):
        store._events = _CountingEvents(store._events, job_id)
        return store._events
    store.redis = _CountingRedis(store.redis, job_id)
    return store.redis


async def test_a_follower_wakes_on_event_without_polling(store):
    job_id = f"idle-{uuid.uuid4().hex[:8]}"
    await store.create(Job(id=job_id))
    counter = _count_looks(store, job_id)
    events = store.events(job_id, after=1)
    waiter = asyncio.create_task(anext(events))
    # A window in which a store that polls would look again and again (at any period up to a
    # second): one that waits for the event looks once, and once more at most if a stale
    # wake-up (the create's own notice, delivered late) reaches it.
    await asyncio.sleep(2.2)
    assert not waiter.done()
    assert counter.looks <= 2, f"the store looked {counter.looks} times while nothing happened"
    await store.update(job_id, message="news")
    event = await asyncio.wait_for(waiter, 10)  # woken by the update: long before its 30 s idle tick
    assert (event.seq, event.message) == (2, "news")
    events.close()


async def test_a_follower_hears_of_queue_changes_when_asked(store):
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    async with store.events("b", after=1, queue_changes=True) as events:
        waiter = asyncio.create_task(anext(events))
        await asyncio.sleep(0.01)
        assert await store.dequeue("preprocess") == "a"
        assert await asyncio.wait_for(waiter, 2) == Tick("queue_moved")
    assert await store.position("preprocess", "b") == 0


async def test_positions_and_removal_from_the_middle(store):
    for i in range(5):
        await store.create(Job(id=f"j{i}"))
    assert [await store.position("preprocess", f"j{i}") for i in range(5)] == [0, 1, 2, 3, 4]
    assert await store.remove_from_queue("preprocess", "j2")
    assert not await store.remove_from_queue("preprocess", "j2")
    assert await store.position("preprocess", "j3") == 2
    assert await store.position("preprocess", "j2") is None


async def test_blocked_consumer_gets_the_next_job(store):
    getter = asyncio.create_task(store.dequeue("generation"))
    await asyncio.sleep(0.01)
    await store.enqueue("generation", "x")
    assert await asyncio.wait_for(getter, 2) == "x"


async def test_cancelled_consumer_does_not_swallow_a_job(store):
    a = asyncio.create_task(store.dequeue("generation"))
    b = asyncio.create_task(store.dequeue("generation"))
    await asyncio.sleep(0.01)
    await store.enqueue("generation", "x")
    a.cancel()  # a was chosen to wake, but is cancelled before it runs
    assert await asyncio.wait_for(b, 2) == "x"
    assert a.cancelled()


async def test_expire_forgets_only_old_ended_jobs(store):
    await store.create(Job(id="old"))
    await store.update("old", status=JobStatus.failed, message="x")
    await store.create(Job(id="live"))
    assert await store.expire(time.time() + 1) == 1
    assert await store.get("old") is None and await store.get("live") is not None


def test_durations_come_from_marks():
    job = Job(id="a", created_at=100.0)
    job.marks.update(created=100.0, preprocess_started=101.0, preprocess_finished=101.5,
                     generation_started=103.0, generation_finished=106.0)
    d = job.durations()
    assert d["queue_wait"] == 1.0 and d["preprocess"] == 0.5 and d["generation_wait"] == 1.5
    assert d["generation"] == 3.0 and d["postprocess"] is None and d["total"] is None


async def test_enqueue_is_a_no_op_while_the_job_is_waiting_or_taken(store):
    await store.enqueue("generation", "x")
    await store.enqueue("generation", "x")
    assert (await store.queue_sizes())["generation"] == 1
    assert await store.dequeue("generation") == "x"
    await store.enqueue("generation", "x")  # a stage repeating its hand-over after a crash
    assert (await store.queue_sizes())["generation"] == 0
    await store.ack("generation", "x")
    await store.enqueue("generation", "x")  # once acked, it may come again
    assert await store.position("generation", "x") == 0


async def test_renew_holds_a_taken_job(store):
    await store.enqueue("postprocess", "x")
    assert await store.dequeue("postprocess") == "x"
    assert await store.renew("postprocess", "x") is True
    await store.ack("postprocess", "x")


# -- what only a shared store does: two store instances stand for two processes -------------

async def test_a_taker_that_never_acks_loses_the_job_after_its_lease(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"))
    assert await a.dequeue("preprocess") == "j"
    # a "dies": it never acks nor renews. b gets the job once the lease has run out.
    assert await asyncio.wait_for(b.dequeue("preprocess"), 30) == "j"
    assert await a.renew("preprocess", "j") is False  # a, were it alive, learns it lost the job
    await a.ack("preprocess", "j")  # ...and its late ack does not release b's lease
    assert await b.renew("preprocess", "j") is True
    await b.ack("preprocess", "j")
    assert await b.renew("preprocess", "j") is False


async def test_a_renewed_lease_is_not_taken_over(long_leases):
    a, b = long_leases
    await a.enqueue("generation", "held")
    assert await a.dequeue("generation") == "held"
    taker = asyncio.create_task(b.dequeue("generation"))
    # Two lease lengths, renewed every eighth of one: a renewal late by most of a lease (a
    # busy machine) still holds it.
    for _ in range(16):
        await asyncio.sleep(a.lease_seconds / 8)
        assert await a.renew("generation", "held")
    await a.enqueue("generation", "next")
    assert await asyncio.wait_for(taker, 30) == "next"
    await a.ack("generation", "held")
    await b.ack("generation", "next")


async def test_a_cancelled_take_hands_the_job_back_at_once(two_processes):
    a, b = two_processes
    await a.enqueue("generation", "x")
    assert await a.dequeue("generation") == "x"
    assert await a.hand_back("generation", "x")
    assert await asyncio.wait_for(b.dequeue("generation"), 30) == "x"
    assert await a.renew("generation", "x") is False


async def test_positions_sizes_and_events_are_the_same_from_every_process(two_processes):
    a, b = two_processes
    for i in range(4):
        await (a if i % 2 else b).create(Job(id=f"j{i}"), max_waiting=10)
    for s in (a, b):
        assert [await s.position("preprocess", f"j{i}") for i in range(4)] == [0, 1, 2, 3]
        assert await s.queue_sizes() == {"preprocess": 4, "generation": 0, "postprocess": 0}
    assert await b.dequeue("preprocess") == "j0"
    assert await b.remove_from_queue("preprocess", "j2")
    for s in (a, b):
        assert [await s.position("preprocess", f"j{i}") for i in range(4)] == [None, 0, None, 1]
    # The queue limit counts every process's jobs (j0, held by b's preprocess, among them).
    for i in range(4, 11):
        await a.create(Job(id=f"j{i}"), max_waiting=10)
    with pytest.raises(QueueFull):
        await b.create(Job(id="over"), max_waiting=10)
    # A waiter in one process wakes on an event written by the other.
    async with a.events("j1", after=1) as events:
        waiter = asyncio.create_task(anext(events))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await b.update("j1", status=JobStatus.preprocessing, message="on b")
        assert (await asyncio.wait_for(waiter, 10)).message == "on b"


async def test_concurrent_writers_never_lose_an_update(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"))
    await asyncio.gather(*(
        (a if i % 2 else b).update("j", marks={f"m{i}": float(i)}, message=f"m{i}") for i in range(20)))
    job = await a.get("j")
    assert {f"m{i}" for i in range(20)} <= set(job.marks)
    assert [e.seq for e in await b.events_after("j", 0)] == list(range(1, 22))


async def test_ended_jobs_carry_the_result_ttl(two_processes):
    a, _ = two_processes
    await a.create(Job(id="j"))
    assert await a.redis.ttl(a.keys.job("j")) == -1  # a live job never expires on its own
    await a.update("j", status=JobStatus.failed, message="x")
    # Redis drops them on its own a while after the sweep should have (a safety net).
    assert a.result_ttl < await a.redis.ttl(a.keys.job("j")) <= a.key_ttl
    assert a.result_ttl < await a.redis.ttl(a.keys.events("j")) <= a.key_ttl


async def test_a_job_between_two_queues_counts_toward_the_limit(store):
    await store.create(Job(id="j0"), max_waiting=3)
    await store.create(Job(id="j1"), max_waiting=3)
    assert await store.dequeue("preprocess") == "j0"  # a preprocess worker holds it
    await store.create(Job(id="j2"), max_waiting=3)
    with pytest.raises(QueueFull):
        await store.create(Job(id="j3"), max_waiting=3)
    await store.enqueue("generation", "j0")  # handed on, not yet acked: counted once
    with pytest.raises(QueueFull):
        await store.create(Job(id="j3"), max_waiting=3)
    await store.ack("preprocess", "j0")
    assert await store.dequeue("generation") == "j0"  # in ComfyUI's hands: no longer waiting
    await store.create(Job(id="j3"), max_waiting=3)


async def test_terminal_listener_webhook_state_and_unfinished(store):
    from comfy_gateway.jobs.model import WebhookState

    ended = []
    store.add_listener(lambda job, previous: ended.append((job.id, job.status)) if job.status.terminal else None)
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    await store.update("a", status=JobStatus.preprocessing, message="p")
    await store.update("a", status=JobStatus.failed, message="x")
    await store.update("a", status=JobStatus.cancelled, message="late")  # dropped: no second call
    assert ended == [("a", JobStatus.failed)]
    assert await store.unfinished() == ["b"]
    seqs = [e.seq for e in await store.events_after("a", 0)]
    await store.set_webhook("a", WebhookState(state="delivered", attempts=1, last_status=200))
    job = await store.get("a")
    assert job.webhook.state == "delivered" and job.status is JobStatus.failed
    assert [e.seq for e in await store.events_after("a", 0)] == seqs  # bookkeeping, no event


async def test_recent_is_newest_first_and_bounded(store):
    for i in range(5):
        await store.create(Job(id=f"r{i}", created_at=1000.0 + i))
    assert [j.id for j in await store.recent(3)] == ["r4", "r3", "r2"]
    assert [j.id for j in await store.recent(50)] == ["r4", "r3", "r2", "r1", "r0"]


async def test_status_counts_follow_transitions_and_expiry(store):
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("b", status=JobStatus.cancelled)
    counts = await store.status_counts()
    assert counts["queued"] == 0 and counts["preprocessing"] == 1 and counts["cancelled"] == 1
    assert set(counts) == {s.value for s in JobStatus}
    await store.update("b", status=JobStatus.failed)  # terminal is final: no change, no count
    assert (await store.status_counts())["failed"] == 0
    await store.expire(time.time() + 1)
    assert (await store.status_counts())["cancelled"] == 0


async def test_listeners_hear_each_change_once_and_cannot_break_it(store):
    heard = []
    store.add_listener(lambda job, prev: heard.append((job.id, prev and prev.value, job.status.value)))
    store.add_listener(lambda job, prev: 1 / 0)  # a broken observer is logged, never raised
    await store.create(Job(id="a"))
    await store.update("a", message="still queued")  # no status change: nothing to hear
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("a", status=JobStatus.timed_out)
    await store.update("a", status=JobStatus.failed)  # dropped: the job already ended
    assert heard == [("a", None, "queued"), ("a", "queued", "preprocessing"), ("a", "preprocessing", "timed_out")]
    assert (await store.get("a")).status is JobStatus.timed_out


async def test_status_alone_follows_the_job(store):
    assert await store.status("nobody") is None
    await store.create(Job(id="a"))
    assert await store.status("a") is JobStatus.queued
    await store.update("a", status=JobStatus.preprocessing)
    await store.set_progress("a", Progress(value=1, max=2))
    assert await store.status("a") is JobStatus.preprocessing
    await store.update("a", status=JobStatus.cancelled, message="c")
    assert await store.status("a") is JobStatus.cancelled
    await store.expire(time.time() + 1)
    assert await store.status("a") is None
