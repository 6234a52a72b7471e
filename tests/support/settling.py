"""What every fault test of issue 10 checks afterwards: every job ended with a message, no
generation slot is still in use, a new job completes, and ComfyUI ran no prompt twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable

import httpx

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def blur_chain(n: int = 8, size: int = 1024, prefix: str = "blur") -> dict:
    """n medium ImageBlur nodes on the real ComfyUI: seconds of work, interruptible between nodes."""
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                       "color": int(uuid.uuid4().int % 0xFFFFFF)}}}
    prev = "1"
    for i in range(n):
        nid = str(10 + i)
        wf[nid] = {"class_type": "ImageBlur", "inputs": {"image": [prev, 0], "blur_radius": 20, "sigma": 3.0}}
        prev = nid
    wf["99"] = {"class_type": "SaveImage", "inputs": {"images": [prev, 0], "filename_prefix": prefix}}
    return wf


def quick(prefix: str = "q") -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1,
                                                         "color": int(uuid.uuid4().int % 0xFFFFFF)}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Wait for check() to return something truthy, asking every 50 ms, up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.05)


async def holds(value: Any) -> Any:
    """`value`, awaitable: for `eventually` on a condition read without a round trip."""
    return value


async def submit(client: httpx.AsyncClient, url: str, workflow: dict, **extra: Any) -> str:
    r = await client.post(url + "/generate", json={"input": {"workflow_json": workflow, **extra}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def comfy_queue(client: httpx.AsyncClient, comfy_url: str) -> tuple[list[str], list[str]]:
    q = (await client.get(comfy_url + "/queue")).json()
    return [i[1] for i in q["queue_running"]], [i[1] for i in q["queue_pending"]]


async def ended(client: httpx.AsyncClient, url: str, job_ids: list[str], timeout: float = 30) -> dict[str, dict]:
    """Every job's result once all have ended, each with a message."""
    results: dict[str, dict] = {}

    async def all_ended() -> bool:
        for job_id in job_ids:
            if job_id not in results:
                job = (await client.get(f"{url}/result/{job_id}")).json()
                if job["status"] in TERMINAL:
                    results[job_id] = job
        return len(results) == len(job_ids)

    await eventually(all_ended, timeout, f"jobs still running: {sorted(set(job_ids) - set(results))}")
    for job in results.values():
        assert job["message"], job
    return results


async def no_slot_in_use(client: httpx.AsyncClient, url: str, timeout: float = 10) -> None:
    async def free() -> bool:
        info = (await client.get(url + "/queue-info")).json()
        return all(b["slots_in_use"] == 0 and b["in_flight"] == 0 for b in info["backends"])

    await eventually(free, timeout, f"a generation slot is still in use on {url}")


async def new_job_completes(client: httpx.AsyncClient, url: str) -> None:
    r = await client.post(url + "/generate/sync?timeout=60", json={"input": {"workflow_json": quick("after")}})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


async def ran_at_most_once(client: httpx.AsyncClient, comfy_url: str, job_id: str, prefix: str) -> None:
    """ComfyUI's SaveImage numbers files per prefix, and each job writes under its own folder:
    a second run of the same prompt would have written <prefix>_00002_.png there."""
    r = await client.get(comfy_url + "/view", params={"filename": f"{prefix}_00002_.png", "subfolder": job_id,
                                                      "type": "output"})
    assert r.status_code == 404, f"job {job_id} ran twice in ComfyUI"


async def settled(client: httpx.AsyncClient, url: str, job_ids: list[str], timeout: float = 30) -> dict[str, dict]:
    """The checks after every fault, but the count of runs (which depends on the ComfyUI)."""
    results = await ended(client, url, job_ids, timeout)
    await no_slot_in_use(client, url)
    await new_job_completes(client, url)
    return results


def store_gateways(request, gateway_factory, tmp_path, **defaults: str):
    """For a fixture parametrized by store ("memory", "redis"): a gateway maker on that store,
    and its clean-up (the Redis one is a one-process Cluster under a key prefix of its own)."""
    from .cluster import Cluster

    if request.param == "memory":
        return (lambda url, **env: gateway_factory(url, **{**defaults, **env})), (lambda: None)
    cluster = Cluster(tmp_path / "cluster")
    return (lambda url, **env: cluster.start(url, **{**defaults, **env})), cluster.stop
