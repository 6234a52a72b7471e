"""Cancel and timeouts end to end against the real ComfyUI."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from .conftest import Gateway, empty_save
from .support.settling import blur_chain
from .support.sse import collect, read_events


async def comfy_queue(client: httpx.AsyncClient, comfyui: str) -> tuple[list[str], list[str]]:
    q = (await client.get(comfyui + "/queue")).json()
    return [i[1] for i in q["queue_running"]], [i[1] for i in q["queue_pending"]]


async def wait_running_in_comfy(client, comfyui, job_id, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        running, _ = await comfy_queue(client, comfyui)
        if job_id in running:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never ran in ComfyUI")


async def comfy_history_status(client, comfyui, job_id, timeout=30.0) -> str:
    for _ in range(int(timeout / 0.05)):
        entry = (await client.get(f"{comfyui}/history/{job_id}")).json().get(job_id)
        if entry:
            return entry["status"]["status_str"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never reached ComfyUI's history")


async def final(client: httpx.AsyncClient, gateway: Gateway, job_id: str) -> dict:
    stream = await collect(client, "GET", f"{gateway.url}/result/{job_id}/stream")
    return stream.events[-1].data["result"]


async def test_cancel_running_job_interrupts_only_that_prompt(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    running = (await client.post(gateway.url + "/generate", json={"input": {"workflow_json": blur_chain()}})).json()["id"]
    queued = (await client.post(gateway.url + "/generate", json={"input": {"workflow_json": blur_chain(2, 256)}})).json()["id"]
    await wait_running_in_comfy(client, comfyui, running)
    r = await client.post(f"{gateway.url}/result/{running}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    # ComfyUI stops it at the next node boundary and records the interruption...
    assert await comfy_history_status(client, comfyui, running) == "error"
    # ...while the other client's job, next in ComfyUI's queue, is not touched and completes.
    assert (await final(client, gateway, queued))["status"] == "completed"
    # The cancelled job stays cancelled whatever ComfyUI reported afterwards.
    again = (await client.get(f"{gateway.url}/result/{running}")).json()
    assert again["status"] == "cancelled" and again["output"] == []


async def test_cancel_job_waiting_in_comfyui_queue_deletes_it_there(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    first = (await client.post(gateway.url + "/generate", json={"input": {"workflow_json": blur_chain(4)}})).json()["id"]
    second = (await client.post(gateway.url + "/generate", json={"input": {"workflow_json": blur_chain(2, 256)}})).json()["id"]
    await wait_running_in_comfy(client, comfyui, first)
    for _ in range(100):
        _, pending = await comfy_queue(client, comfyui)
        if second in pending:
            break
        await asyncio.sleep(0.05)
    assert second in pending, "the next job was not queued in ComfyUI while the first ran"
    r = await client.delete(f"{gateway.url}/result/{second}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    _, pending = await comfy_queue(client, comfyui)
    assert second not in pending
    assert (await final(client, gateway, first))["status"] == "completed"
    # Deleted from the queue, it never ran: ComfyUI has no history of it.
    assert (await client.get(f"{comfyui}/history/{second}")).json() == {}
    assert (await client.get(f"{gateway.url}/result/{second}")).json()["status"] == "cancelled"


async def test_cancel_job_waiting_in_gateway_queue(gateway_factory, comfyui: str, client: httpx.AsyncClient):
    gw = gateway_factory(comfyui, GENERATION_WORKERS="1")
    first = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": blur_chain(4)}})).json()["id"]
    waiting = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}})).json()["id"]
    follower = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix="f")}})).json()["id"]
    await wait_running_in_comfy(client, comfyui, first)
    async with client.stream("GET", f"{gw.url}/result/{follower}/stream") as resp:
        events = read_events(resp)
        ev = await events.__anext__()
        while ev.event != "queue":
            ev = await events.__anext__()
        assert ev.data["queue_position"]["position"] == 1  # behind `waiting`
        r = await client.post(f"{gw.url}/result/{waiting}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        ev = await events.__anext__()
        while ev.event != "queue":
            ev = await events.__anext__()
        assert ev.data["queue_position"]["position"] == 0  # it left the queue at once
    assert (await final(client, gw, first))["status"] == "completed"
    assert (await final(client, gw, follower))["status"] == "completed"
    assert (await client.get(f"{gw.url}/result/{waiting}")).json()["status"] == "cancelled"
    assert (await client.get(f"{comfyui}/history/{waiting}")).json() == {}


async def test_cancel_finished_or_unknown(gateway: Gateway, client: httpx.AsyncClient):
    done = (await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})).json()
    assert done["status"] == "completed"
    r = await client.post(f"{gateway.url}/result/{done['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["status"] == "completed" and "completed" in r.json()["detail"]
    assert (await client.get(f"{gateway.url}/result/{done['id']}")).json()["status"] == "completed"
    r = await client.delete(f"{gateway.url}/result/{uuid.uuid4()}")
    assert r.status_code == 404


async def test_request_timeout_stops_the_job_in_comfyui(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    r = await client.post(gateway.url + "/generate/sync",
                          json={"input": {"workflow_json": blur_chain(8, 2048), "timeout": 1.5}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "timed_out"
    assert "timed out after 1.5 s" in result["message"]
    assert await comfy_history_status(client, comfyui, result["id"]) == "error"  # interrupted
    running, pending = await comfy_queue(client, comfyui)
    assert result["id"] not in running + pending
    ok = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})
    assert ok.json()["status"] == "completed"


@pytest.mark.parametrize("bad", [0, -1, "soon", 10 * 86400])
async def test_timeout_field_bounds(gateway: Gateway, client: httpx.AsyncClient, bad):
    r = await client.post(gateway.url + "/generate", json={"input": {"workflow_json": empty_save(), "timeout": bad}})
    assert r.status_code == 422
    assert "timeout" in r.json()["detail"]
