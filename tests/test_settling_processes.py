"""Every job settles when gateway processes die (issue 10): time limits, delivery counts and owed
webhooks are facts in Redis, enforced by whichever process is alive. Real processes killed with
-9, a real Redis, the real ComfyUI where it can show the fault, a real webhook receiver."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import WEBHOOK_SECRET, Fake
from .support.cluster import Cluster
from .support.procs import free_port
from .support.settling import (blur_chain, comfy_queue, ended, eventually, quick, ran_at_most_once, settled,
                               submit)
from .support.webhook_receiver import start_receiver


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


async def test_time_limits_hold_after_the_process_that_took_the_jobs_is_killed(
        comfyui: str, cluster: Cluster, client: httpx.AsyncClient):
    a = cluster.start(comfyui)
    b = cluster.start(comfyui)
    # Ten seconds of work and more each on a quiet machine (twelve 2048x2048 blurs), far past
    # their 4 s limit: only a time limit can end them early.
    jobs = [await submit(client, a.url, blur_chain(12, 2048, prefix=f"t{i}"), timeout=4) for i in range(3)]
    await eventually(lambda: _any_in_comfy(client, comfyui, jobs), 30, "a job reached ComfyUI")
    a.kill()

    results = await ended(client, b.url, jobs, timeout=30)
    for job_id, job in results.items():
        assert job["status"] == "timed_out" and job["message"] == "timed out after 4 s", job
        # Ended near its limit (not when its work would have finished).
        assert job["durations"]["total"] < 15, job
    # Withdrawn from ComfyUI, whichever process had sent them.
    await eventually(lambda: _none_in_comfy(client, comfyui, jobs), 30, "their prompts left ComfyUI")
    await settled(client, b.url, [])
    for i, job_id in enumerate(jobs):
        await ran_at_most_once(client, comfyui, job_id, f"t{i}")


async def _any_in_comfy(client, comfyui, jobs) -> bool:
    running, pending = await comfy_queue(client, comfyui)
    return bool(set(jobs) & set(running + pending))


async def _none_in_comfy(client, comfyui, jobs) -> bool:
    running, pending = await comfy_queue(client, comfyui)
    return not set(jobs) & set(running + pending)


async def test_a_job_whose_takers_keep_dying_fails_after_max_deliveries(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)  # the prompt waits in ComfyUI's queue while its process dies
    a = cluster.start(fake.url, MAX_DELIVERIES="1")
    job_id = await submit(client, a.url, quick("k"))
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["prompts_received"] >= 1), 20, "prompt sent")
    a.kill()
    b = cluster.start(fake.url, MAX_DELIVERIES="1")  # takes the job over once a's lease runs out

    job = (await ended(client, b.url, [job_id], timeout=30))[job_id]
    assert job["status"] == "failed" and job["error"]["type"] == "too_many_deliveries", job
    assert "took this job 2 times" in job["message"] and "MAX_DELIVERIES=1" in job["message"]
    # Its prompt was withdrawn from ComfyUI: it will not run for nobody.
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_remaining"] == 0), 10, "prompt withdrawn")
    fake.control(hang=False)
    await settled(client, b.url, [])
    stats = fake.stats()
    assert stats["prompts_received"] == 2 and stats["prompts_executed"] == 1  # only settled()'s own job ran


async def test_a_webhook_owed_by_a_killed_process_is_delivered_by_another(
        comfyui: str, cluster: Cluster, client: httpx.AsyncClient):
    port = free_port()
    env = dict(WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_BACKOFF="0.5", WEBHOOK_RETRIES="10",
               ASSET_ALLOWED_NETWORKS="127.0.0.0/8")
    a = cluster.start(comfyui, **env)
    b = cluster.start(comfyui, **env)
    job_id = await submit(client, a.url, quick("w"), webhook={"url": f"http://127.0.0.1:{port}/hook"})

    async def retrying() -> bool:  # the receiver is down: attempts fail and are retried
        hook = (await client.get(f"{b.url}/result/{job_id}")).json()["webhook"]
        return hook["state"] == "retrying"

    await eventually(retrying, 30, "the webhook is being retried")
    a.kill()
    receiver, runner = await start_receiver(WEBHOOK_SECRET, port=port)
    try:
        deliveries = await asyncio.wait_for(receiver.wait_for("hook", 1), 60)
        assert deliveries[0].verified and deliveries[0].json["id"] == job_id
        assert deliveries[0].json["status"] == "completed"

        async def delivered():
            hook = (await client.get(f"{b.url}/result/{job_id}")).json()["webhook"]
            return hook if hook["state"] == "delivered" else None

        hook = await eventually(delivered, 10, "the webhook recorded as delivered")
        assert hook["attempts"] >= 2 and hook["last_status"] == 200
        await settled(client, b.url, [job_id])
        assert len(receiver.at("hook")) == 1  # delivered once
    finally:
        await runner.cleanup()


async def test_a_cancel_by_another_process_while_the_prompt_is_posted_withdraws_it(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    a = cluster.start(fake.url)
    # b cannot reach this ComfyUI: only a, which posted the prompt, can take it back out.
    b = cluster.start(f"http://127.0.0.1:{free_port()}")
    fake.control(hang=True, prompt_reply_delay=1.5)  # queued at once, answered 1.5 s later
    job_id = await submit(client, a.url, quick("w"))
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_pending"] == 1), 20, "the prompt queued")
    r = await client.post(f"{b.url}/result/{job_id}/cancel")
    assert r.status_code == 200, r.text
    # a's POST returns after the cancel: a learned of it from the job's events and withdraws.
    await eventually(lambda: asyncio.to_thread(lambda: fake.stats()["queue_pending"] == 0), 20,
                     "the prompt withdrawn from ComfyUI")
    fake.control(hang=False, prompt_reply_delay=0)
    results = await settled(client, a.url, [job_id])
    assert results[job_id]["status"] == "cancelled", results[job_id]
    assert fake.stats()["prompts_executed"] == 1  # settled()'s own job only
