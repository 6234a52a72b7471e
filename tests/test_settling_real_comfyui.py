"""Every job settles (issue 10), against the real ComfyUI: someone clears ComfyUI's queue,
deletes one of our prompts or interrupts one from another client. After each: every job ended
within seconds with a message, no slot is in use, a new job completes, no prompt ran twice.
Both stores: what a user sees must not depend on API_CACHE."""

from __future__ import annotations

import httpx
import pytest

from .support.settling import (blur_chain, comfy_queue, eventually, quick, ran_at_most_once, settled,
                               store_gateways, submit)


@pytest.fixture(params=["memory", "redis"])
def start_gateway(request, gateway_factory, tmp_path):
    """A gateway maker on the store under test. RECONCILE_INTERVAL is long: what must notice the
    vanished prompts within seconds is ComfyUI's own status frame, not the slow timer."""
    make, cleanup = store_gateways(request, gateway_factory, tmp_path, RECONCILE_INTERVAL="300")
    yield make
    cleanup()


async def pending_in_comfy(client: httpx.AsyncClient, comfyui: str, running: str, pending: list[str]) -> bool:
    now_running, now_pending = await comfy_queue(client, comfyui)
    return running in now_running and set(pending) <= set(now_pending)


async def test_cleared_queue_runs_each_job_once_more_then_fails_it_with_a_message(
        comfyui: str, start_gateway, client: httpx.AsyncClient):
    gw = start_gateway(comfyui)
    blocker = await submit(client, gw.url, blur_chain(8, prefix="blk"))
    a = await submit(client, gw.url, quick("a"))
    b = await submit(client, gw.url, quick("b"))
    await eventually(lambda: pending_in_comfy(client, comfyui, blocker, [a, b]), 30, "a and b pending in ComfyUI")

    # "Clear queue" in ComfyUI: a and b leave its queue without running and without history.
    assert (await client.post(comfyui + "/queue", json={"clear": True})).status_code == 200
    # The gateway notices at once and sends them again (the blocker still runs in front).
    await eventually(lambda: pending_in_comfy(client, comfyui, blocker, [a, b]), 20, "a and b sent again")
    for job_id in (a, b):
        assert (await client.get(f"{gw.url}/result/{job_id}")).json()["status"] == "generating"

    # A second clear: they are not sent a third time, they fail and say why.
    assert (await client.post(comfyui + "/queue", json={"clear": True})).status_code == 200
    results = await settled(client, gw.url, [blocker, a, b], timeout=90)
    assert results[blocker]["status"] == "completed", results[blocker]
    for job_id in (a, b):
        err = results[job_id]["error"]
        assert results[job_id]["status"] == "failed" and err["type"] == "prompt_lost", results[job_id]
        assert "left ComfyUI's queue without running" in err["message"] and "cleared" in err["message"]
    for job_id, prefix in ((blocker, "blk"), (a, "a"), (b, "b")):
        await ran_at_most_once(client, comfyui, job_id, prefix)


async def test_prompt_deleted_or_interrupted_by_another_client(comfyui: str, start_gateway, client: httpx.AsyncClient):
    gw = start_gateway(comfyui)
    blocker = await submit(client, gw.url, blur_chain(8, prefix="blk"))
    a = await submit(client, gw.url, quick("a"))
    await eventually(lambda: pending_in_comfy(client, comfyui, blocker, [a]), 30, "a pending in ComfyUI")

    # Another client deletes our pending prompt: it is sent again...
    assert (await client.post(comfyui + "/queue", json={"delete": [a]})).status_code == 200
    await eventually(lambda: pending_in_comfy(client, comfyui, blocker, [a]), 20, "a sent again")
    # ...and interrupts whatever runs (ComfyUI's Cancel button: /interrupt without a prompt id).
    assert (await client.post(comfyui + "/interrupt")).status_code == 200

    results = await settled(client, gw.url, [blocker, a], timeout=90)
    stopped = results[blocker]
    assert stopped["status"] == "failed" and stopped["error"]["kind"] == "interrupted", stopped
    assert "by someone else, not by this gateway" in stopped["message"]
    assert results[a]["status"] == "completed", results[a]
    await ran_at_most_once(client, comfyui, a, "a")
