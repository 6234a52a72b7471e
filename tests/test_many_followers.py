"""Many clients following a few jobs over GET /result/{id}/stream, through a real gateway
process in front of the fake ComfyUI, with each job store: every follower gets its job's
places in the queue and its final result; the streams of a job share the work of following it
(counted on /metrics). How long other requests wait meanwhile is the benchmark's part
`fanout` (bench/README.md), not a test."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from .conftest import Fake, Gateway
from .support.redis import REDIS_URL, new_prefix, wipe_prefix
from .support.sse import Event, read_events
from .test_metrics import scrape

JOBS = 4
PER_JOB = 60


def slow(n: int) -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": n}},
            "2": {"class_type": "FakeSlow", "inputs": {"seconds": 0.5, "steps": 2, "images": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "f"}}}


@pytest.fixture(params=["memory", "redis"])
def store_env(request):
    if request.param == "memory":
        yield {"API_CACHE": "memory"}
        return
    prefix = new_prefix()
    yield {"API_CACHE": "redis", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    asyncio.run(wipe_prefix(prefix))


async def follow(client: httpx.AsyncClient, url: str, connected: asyncio.Event, counter: list[int]) -> list[Event]:
    events: list[Event] = []
    async with client.stream("GET", url, timeout=120) as resp:
        assert resp.status_code == 200, resp.status_code
        async for ev in read_events(resp):
            if not events:
                counter[0] += 1
                if counter[0] == JOBS * PER_JOB:
                    connected.set()
            events.append(ev)
            if ev.event == "final_result":
                break
    return events


async def wait_queued(client: httpx.AsyncClient, gw: Gateway, waiting: int) -> None:
    """Until the jobs have left preprocessing and `waiting` of them wait for the (hung) backend."""
    deadline = time.monotonic() + 30
    while True:
        info = (await client.get(gw.url + "/queue-info")).json()
        if info["queues"]["generation"]["waiting"] == waiting and info["queues"]["preprocess"]["waiting"] == 0:
            return
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.05)


async def run_followers(fake: Fake, gw: Gateway) -> tuple[list[str], list[list[list[Event]]]]:
    """JOBS jobs queued behind a hung backend, PER_JOB followers each, then the backend let go."""
    fake.control(hang=True)
    limits = httpx.Limits(max_connections=JOBS * PER_JOB + 10, max_keepalive_connections=10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        ids = []
        for n in range(JOBS):
            r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(n)}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        await wait_queued(client, gw, JOBS - 1)  # the first is at the backend, the others wait
        connected, counter = asyncio.Event(), [0]
        tasks = [[asyncio.create_task(follow(client, f"{gw.url}/result/{job_id}/stream", connected, counter))
                  for _ in range(PER_JOB)] for job_id in ids]
        await asyncio.wait_for(connected.wait(), 60)
        fake.control(hang=False)
        streams = [await asyncio.wait_for(asyncio.gather(*per_job), 120) for per_job in tasks]
    return ids, streams


def positions(events: list[Event]) -> list[int]:
    return [e.data["queue_position"]["position"] for e in events
            if e.data["queue_position"]["position"] is not None]


def test_every_follower_gets_its_places_and_its_final_result(fake_factory, gateway_factory, store_env):
    fake = fake_factory()
    gw = gateway_factory(fake.url, GENERATION_WORKERS=1, **store_env)
    ids, streams = asyncio.run(run_followers(fake, gw))
    for k, (job_id, followers) in enumerate(zip(ids, streams)):
        for events in followers:
            final = events[-1]
            assert final.event == "final_result", [e.event for e in events]
            assert [e.event for e in events].count("final_result") == 1
            assert final.data["result"]["id"] == job_id, final.data
            assert final.data["result"]["status"] == "completed", final.data["result"]
            assert final.data["result"]["output"], final.data
            # Ids grow along the stream: stored events <seq>, queue places <seq>.<n> after them.
            keys = [tuple(int(p) for p in e.id.split(".")) + (0,) * (1 - e.id.count(".")) for e in events]
            assert keys == sorted(keys) and len(set(keys)) == len(keys), [e.id for e in events]
            # The k-th job waited behind k-1 others (the first was at the backend) and moved up
            # one place at a time to the head of the queue.
            seen = positions(events)
            if k == 0:
                assert seen == [], seen
            else:
                assert seen[0] == k - 1 and seen[-1] == 0, seen
                assert all(a >= b for a, b in zip(seen, seen[1:])), seen


def test_the_streams_of_a_job_share_its_places_and_its_final_result(fake_factory, gateway_factory, store_env):
    fake = fake_factory()
    gw = gateway_factory(fake.url, GENERATION_WORKERS=1, **store_env)
    asyncio.run(run_followers(fake, gw))
    m = scrape(gw)
    # One final_result rendered per job, not one per follower.
    assert m[("comfy_gateway_final_results_rendered_total", ())] == JOBS
    # The queues were read for all the followers at once, a few times per queue change: far
    # fewer times than there are followers (one read each per change would be thousands).
    assert m[("comfy_gateway_queue_snapshots_total", ())] < PER_JOB, m[("comfy_gateway_queue_snapshots_total", ())]
