"""Every job settles (issue 10), for the faults only the fake ComfyUI makes on demand: the answer
to POST /prompt lost after ComfyUI queued the prompt (a read timeout, a proxy's 502/504), failing
/history requests, and the job store failing while a worker follows its job. An unknown outcome
is asked about, never guessed: the prompt runs exactly once and the job completes. Both stores."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import JobStatus
from comfy_gateway.jobs.redis import RedisJobStore, connect
from comfy_gateway.pipeline.runtime import Runtime

from .conftest import Fake
from .support.redis import REDIS_URL, new_prefix, wipe_prefix
from .support.runtimes import runtime_over
from .support.settling import eventually, quick, settled, store_gateways, submit


def slow(seconds: float, prefix: str = "slow", steps: int = 1) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": steps}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


@pytest.fixture(params=["memory", "redis"])
def start_gateway(request, gateway_factory, tmp_path):
    make, cleanup = store_gateways(request, gateway_factory, tmp_path, SSE_PING_SECONDS="0.3")
    yield make
    cleanup()


async def test_prompt_answer_too_slow_is_asked_about_not_failed(fake_factory, start_gateway, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    gw = start_gateway(fake.url, BACKEND_TIMEOUT="1")
    fake.control(prompt_reply_delay=3)  # queued at once, answered after the gateway gave up waiting
    job_id = await submit(client, gw.url, slow(0.2))
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["prompts_executed"] >= 1), 20, "the prompt ran")
    fake.control(prompt_reply_delay=0)
    results = await settled(client, gw.url, [job_id])
    assert results[job_id]["status"] == "completed", results[job_id]
    stats = fake.stats()
    assert stats["prompts_received"] == 2 and stats["prompts_executed"] == 2  # the job's, then the new job's


@pytest.mark.parametrize("status", [502, 504])
async def test_proxy_error_after_queueing_never_runs_the_prompt_twice(
        status: int, fake_factory, start_gateway, client: httpx.AsyncClient):
    """Two backends behind proxies that lose the answer: the prompt must not go to the other one."""
    fakes = [fake_factory(), fake_factory()]
    gw = start_gateway(",".join(f.url for f in fakes))
    for fake in fakes:
        fake.control(proxy_error_next=1, proxy_error_status=status)
    job_id = await submit(client, gw.url, slow(0.2))
    results = await settled(client, gw.url, [job_id])
    assert results[job_id]["status"] == "completed", results[job_id]
    received = [f.stats()["prompts_received"] for f in fakes]
    # The job's prompt reached one backend once; the new job of settled() ran once, anywhere.
    assert sum(received) == 2, received
    assert [f.stats()["prompts_executed"] for f in fakes] == received


async def test_failing_history_requests_do_not_fail_a_finished_prompt(
        fake_factory, start_gateway, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    gw = start_gateway(fake.url)
    fake.control(history_fail_next=4)
    job_id = await submit(client, gw.url, slow(1.0))
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_remaining"] == 1), 20, "the prompt runs")
    # Frames go missing while it runs, so only /history can tell how it ended.
    fake.control(drop_ws_now=True)
    results = await settled(client, gw.url, [job_id])
    assert results[job_id]["status"] == "completed", results[job_id]
    assert fake.control()["history_fail_next"] == 0  # every failure was met, and asked past
    assert fake.stats()["prompts_received"] == 2


async def test_a_prompt_deleted_while_no_frame_can_tell_is_found_by_the_timer(
        fake_factory, start_gateway, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    gw = start_gateway(fake.url, RECONCILE_INTERVAL="0.5")
    fake.control(hang=True)  # ComfyUI holds the prompt in its queue
    job_id = await submit(client, gw.url, quick("d"))
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_pending"] == 1), 20, "prompt queued")
    fake.control(refuse_ws=True, drop_ws_now=True)  # no status frame reaches the gateway now
    assert (await client.post(fake.url + "/queue", json={"delete": [job_id]})).status_code == 200

    async def noticed() -> bool:  # while the socket is still down: only the timer can see it
        job = (await client.get(f"{gw.url}/result/{job_id}")).json()
        info = (await client.get(gw.url + "/queue-info")).json()
        return "left ComfyUI's queue without running" in job["message"] and info["backends"][0]["slots_in_use"] == 0

    await eventually(noticed, 15, "the deleted prompt noticed and its slot freed")
    fake.control(refuse_ws=False, hang=False)
    results = await settled(client, gw.url, [job_id])
    assert results[job_id]["status"] == "completed", results[job_id]  # run once more
    stats = fake.stats()
    assert stats["prompts_received"] == 3 and stats["prompts_executed"] == 2  # deleted, re-run, new job


# -- store errors while a worker follows its job (in-process: the store is made to fail) ----------
class FailingFollows:
    """A store whose first `fail` event reads raise, as a Redis connection blip would."""

    fail = 2

    def events(self, job_id: str, after: int = 0, **kw):
        inner = super().events(job_id, after, **kw)  # type: ignore[misc]
        store = self

        class Failing:
            def __aiter__(self):
                return self

            async def __anext__(self):
                if store.fail > 0:
                    store.fail -= 1
                    raise ConnectionError("Redis went away (injected)")
                return await inner.__anext__()

            def close(self) -> None:
                inner.close()

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc) -> None:
                inner.close()

        return Failing()


class FailingMemoryStore(FailingFollows, MemoryJobStore):
    pass


class FailingRedisStore(FailingFollows, RedisJobStore):
    pass


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_store_error_while_following_never_harms_the_job(kind: str, fake_factory, tmp_path):
    fake: Fake = fake_factory()
    prefix = new_prefix()
    store = FailingMemoryStore() if kind == "memory" else FailingRedisStore(connect(REDIS_URL), prefix=prefix)
    try:
        async with runtime_over(store, fake.url, tmp_path) as runtime:
            await eventually(lambda: _connected(runtime), 10, "the backend's websocket")
            job, _ = await runtime.submit({"workflow_json": slow(0.5)})

            async def ended():
                now = await store.get(job.id)
                return now if now.status.terminal else None

            done = await eventually(ended, 20, "the job ended")
            assert done.status is JobStatus.completed, done
            assert store.fail == 0  # the failures did happen while it was followed
            stats = fake.stats()
            assert stats["prompts_received"] == 1 and stats["prompts_executed"] == 1
            assert runtime.router.in_use == {b.name: 0 for b in runtime.pool.backends}
            again, _ = await runtime.submit({"workflow_json": quick("after")})
            started = time.monotonic()
            while (await store.get(again.id)).status is not JobStatus.completed:
                assert time.monotonic() - started < 20, "a new job did not complete"
                await asyncio.sleep(0.05)
    finally:
        if kind == "redis":
            await wipe_prefix(prefix)


async def _connected(runtime: Runtime) -> bool:
    return all(b.connected.is_set() for b in runtime.pool.backends)


async def test_memory_shutdown_withdraws_what_it_fails_from_comfyui(fake_factory, gateway_factory,
                                                                     client: httpx.AsyncClient):
    import os
    import signal

    fake: Fake = fake_factory()
    gw = gateway_factory(fake.url, SHUTDOWN_GRACE="0.5")
    ids = [await submit(client, gw.url, slow(30, prefix=f"s{i}", steps=60)) for i in range(3)]
    # One runs in ComfyUI, two wait in its queue.
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_remaining"] == 3), 20, "all in ComfyUI")
    os.kill(gw.proc.proc.pid, signal.SIGTERM)
    await asyncio.to_thread(gw.proc.proc.wait, 30)
    # Nothing of ours is left to run in ComfyUI for nobody: the waiting ones were deleted, the
    # running one interrupted.
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_remaining"] == 0), 20,
                     "the prompts left ComfyUI")
    # The waiting ones never ran; the running one was stopped, not run to its end.
    ran = [httpx.get(f"{fake.url}/history/{i}").json().get(i) for i in ids]
    ran = [entry for entry in ran if entry]
    assert len(ran) == 1 and "execution_interrupted" in [m[0] for m in ran[0]["status"]["messages"]]


async def test_webhook_retries_hold_no_slot_while_they_wait(fake_factory, gateway_factory, receiver,
                                                            client: httpx.AsyncClient):
    """Receivers that answer 503 and are retried much later must not block another client's
    webhooks: with 2 delivery slots, 4 webhooks waiting 15+ s for their retry hold none."""
    from .conftest import WEBHOOK_SECRET

    fake: Fake = fake_factory()
    gw = gateway_factory(fake.url, WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_CONCURRENCY="2",
                         WEBHOOK_BACKOFF="30", WEBHOOK_RETRIES="1", ASSET_ALLOWED_NETWORKS="127.0.0.0/8")
    busy = [receiver.script(f"busy{i}-{id(gw)}", 503, 503) for i in range(4)]
    for url in busy:
        r = await client.post(gw.url + "/generate/sync", json={"input": {
            "workflow_json": quick("b"), "webhook": {"url": url}}})
        assert r.json()["status"] == "completed"
    for i in range(4):
        await asyncio.wait_for(receiver.wait_for(f"busy{i}-{id(gw)}", 1), 20)
    # Every busy webhook now waits to be retried; another client's goes out at once.
    ok_path = f"ok-{id(gw)}"
    r = await client.post(gw.url + "/generate/sync", json={"input": {
        "workflow_json": quick("o"), "webhook": {"url": receiver.script(ok_path)}}})
    assert r.json()["status"] == "completed"
    (delivery,) = await asyncio.wait_for(receiver.wait_for(ok_path, 1), 10)
    assert delivery.verified
