"""Warm-up and readiness: against the real ComfyUI (its own process here, since the test kills
it and brings it back), and the fake for the waiting-queue limit; backend names that reveal no
address or credentials."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from .conftest import Fake, empty_save
from .support.procs import free_port, start_comfyui
from .test_gpu_faults import until


async def status_of(client: httpx.AsyncClient, url: str) -> int:
    return (await client.get(url)).status_code


def saved_prefixes(history: dict) -> list[str]:
    """The SaveImage filename_prefix of each prompt in a /history answer, oldest first."""
    out = []
    for entry in history.values():
        prompt = entry["prompt"][2]
        out += [n["inputs"]["filename_prefix"] for n in prompt.values() if n["class_type"] == "SaveImage"]
    return out


async def test_warm_up_before_rotation_and_again_after_a_restart(tmp_path, gateway_factory, client: httpx.AsyncClient):
    port = free_port()
    proc, comfy = start_comfyui(tmp_path / "data", tmp_path / "comfyui-1.log", port=port)
    try:
        warmup = tmp_path / "warmup.json"
        warmup.write_text(json.dumps(empty_save(32, 32, prefix="warmup")))
        gw = gateway_factory(comfy, WARMUP_WORKFLOW=str(warmup))
        assert await until(lambda: _is_ready(client, gw.url), "/ready after the warm-up", 60)
        assert saved_prefixes((await client.get(comfy + "/history")).json()) == ["warmup"]
        r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="job")}})
        assert r.json()["status"] == "completed"
        prefixes = saved_prefixes((await client.get(comfy + "/history")).json())
        assert prefixes[0] == "warmup" and len(prefixes) == 2 and "job" in prefixes[1]
        health = (await client.get(gw.url + "/health")).json()["backends"][0]
        assert health["state"] == "ready" and health["warmups"] == 1 and health["warmup_seconds"] > 0

        proc.stop()
        assert await until(lambda: _not_ready(client, gw.url), "/ready turns 503 once ComfyUI is gone", 30)
        body = (await client.get(gw.url + "/ready")).json()
        assert "no backend in rotation" in body["reasons"][0] and "backend-0: down" in body["reasons"][0]
        # A job sent now waits; it is not refused.
        waiting = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix="wait")}})
        assert waiting.status_code == 202

        proc, _ = start_comfyui(tmp_path / "data", tmp_path / "comfyui-2.log", port=port)
        assert await until(lambda: _is_ready(client, gw.url), "/ready again after the new warm-up", 60)
        assert await until(lambda: _completed(client, gw.url, waiting.json()["id"]), "the waiting job ran", 60)
        # The new ComfyUI ran the warm-up before the job that waited.
        prefixes = saved_prefixes((await client.get(comfy + "/history")).json())
        assert prefixes[0] == "warmup" and "wait" in prefixes[1], prefixes
        health = (await client.get(gw.url + "/health")).json()["backends"][0]
        assert health["warmups"] == 2
        metrics = (await client.get(gw.url + "/metrics")).text
        assert re.search(r'comfy_gateway_warmup_seconds_count\{backend="127.0.0.1:%d"\} 2.0' % port, metrics)
    finally:
        proc.stop()


async def test_a_warmup_file_that_is_no_workflow_stops_the_start(tmp_path, gateway_factory):
    bad = tmp_path / "warmup.json"
    bad.write_text('["not", "a", "workflow"]')
    with pytest.raises(RuntimeError, match="WARMUP_WORKFLOW .* not an API-format workflow"):
        gateway_factory(f"http://127.0.0.1:{free_port()}", WARMUP_WORKFLOW=str(bad))


async def test_ready_is_503_past_ready_max_queue(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    gw = gateway_factory(fake.url, READY_MAX_QUEUE="1", GENERATION_WORKERS="1")
    assert await until(lambda: _is_ready(client, gw.url), "/ready at start")
    fake.control(hang=True)
    ids = []
    for i in range(2):  # one in ComfyUI's hands, one waiting: 1 is not more than 1
        ids.append((await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix=f"r{i}")}})).json()["id"])
    assert await until(lambda: _waiting(client, gw.url, 1), "one job waiting")
    assert await status_of(client, gw.url + "/ready") == 200
    ids.append((await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix="r2")}})).json()["id"])
    assert await until(lambda: _waiting(client, gw.url, 2), "two jobs waiting")
    r = await client.get(gw.url + "/ready")
    assert r.status_code == 503 and "2 jobs waiting, more than READY_MAX_QUEUE=1" in r.json()["reasons"]
    from comfy_gateway.client import AsyncClient

    async with AsyncClient(gw.url) as c:  # the Python client reads it as well
        readiness = await c.ready()
    assert readiness.ready is False and readiness.waiting == 2 and readiness.backends_in_rotation == ["backend-0"]
    fake.control(hang=False)
    for job_id in ids:
        assert await until(lambda: _completed(client, gw.url, job_id), "the jobs ran")
    assert await status_of(client, gw.url + "/ready") == 200


async def test_backend_names_reveal_no_address_or_credentials(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    host_port = fake.url.split("://")[1]
    dead = free_port()
    gw = gateway_factory(f"gpu-a=http://operator:s3cretpw@{host_port},http://operator:s3cretpw@127.0.0.1:{dead}")
    assert await until(lambda: _is_ready(client, gw.url), "/ready")
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="n")}})
    assert r.json()["status"] == "completed" and r.json()["backend"] == host_port
    health = (await client.get(gw.url + "/health")).text
    ready = (await client.get(gw.url + "/ready")).text
    assert [b["name"] for b in json.loads(health)["backends"]] == ["gpu-a", "backend-1"]
    assert json.loads(ready)["backends_in_rotation"] == ["gpu-a"]
    for open_view in (health, ready):  # open without a key: no address at all
        assert "127.0.0.1" not in open_view and str(fake.url.rsplit(":", 1)[1]) not in open_view
        assert str(dead) not in open_view and "s3cretpw" not in open_view and "operator" not in open_view
    queue_info = (await client.get(gw.url + "/queue-info")).text
    assert host_port in queue_info and "s3cretpw" not in queue_info
    assert "s3cretpw" not in r.text and "s3cretpw" not in gw.log()


async def _is_ready(client: httpx.AsyncClient, url: str) -> bool:
    return await status_of(client, url + "/ready") == 200


async def _not_ready(client: httpx.AsyncClient, url: str) -> bool:
    return await status_of(client, url + "/ready") == 503


async def _completed(client: httpx.AsyncClient, url: str, job_id: str) -> bool:
    return (await client.get(f"{url}/result/{job_id}")).json()["status"] == "completed"


async def _waiting(client: httpx.AsyncClient, url: str, n: int) -> bool:
    return (await client.get(url + "/ready")).json()["waiting"] == n


async def test_ready_is_503_while_draining(fake_factory, gateway_factory, client: httpx.AsyncClient):
    import os
    import signal

    from .test_faults_fake_comfyui import slow

    fake: Fake = fake_factory()
    gw = gateway_factory(fake.url, SHUTDOWN_GRACE="30")
    assert await until(lambda: _is_ready(client, gw.url), "/ready at start")
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(30, steps=30)}})).json()["id"]
    os.kill(gw.proc.proc.pid, signal.SIGTERM)
    assert await until(lambda: _not_ready(client, gw.url), "/ready turns 503 on SIGTERM")
    assert "draining: the gateway is shutting down" in (await client.get(gw.url + "/ready")).json()["reasons"]
    await client.post(f"{gw.url}/result/{job}/cancel")  # lets the drain end now
    assert await asyncio.to_thread(gw.proc.proc.wait, 30) is not None


async def test_a_failing_warm_up_keeps_the_backend_out_and_says_why(tmp_path, fake_factory, gateway_factory,
                                                                     client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))
    gw = gateway_factory(fake.url, WARMUP_WORKFLOW=str(warmup))
    health = await until(lambda: _warmup_error(client, gw.url), "/health shows the warm-up failing")
    assert health["state"] == "warming" and "NoSuchNode" in health["warmup_error"]
    assert fake.url.rsplit(":", 1)[1] not in json.dumps(health)
    ready = await client.get(gw.url + "/ready")
    assert ready.status_code == 503 and "backend-0: warming" in ready.json()["reasons"][0]


async def _warmup_error(client: httpx.AsyncClient, url: str):
    backend = (await client.get(url + "/health")).json()["backends"][0]
    return backend if backend["warmup_error"] else None
