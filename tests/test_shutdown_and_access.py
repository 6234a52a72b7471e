"""SIGTERM drain, a hung node meeting its timeout, API keys and CORS (with the fake ComfyUI)."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from .conftest import empty_save
from .support.sse import collect
from .support.wait import until
from .test_faults_fake_comfyui import slow


async def test_hung_comfyui_job_times_out_and_is_withdrawn(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url)
    fake.control(hang=True)  # ComfyUI takes the prompt but never runs it
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(), "timeout": 0.8}})
    result = r.json()
    assert r.status_code == 200 and result["status"] == "timed_out", result
    assert fake.stats()["queue_pending"] == 0  # deleted from ComfyUI's queue
    fake.control(hang=False)
    # ComfyUI runs its queue in order: had the withdrawn prompt stayed, it would run before
    # this next one. Only the next one runs, and the timed-out job stays timed out.
    nxt = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})
    assert nxt.status_code == 200 and nxt.json()["status"] == "completed"
    assert fake.stats()["prompts_executed"] == 1
    assert httpx.get(f"{fake.url}/history/{result['id']}").json() == {}
    assert (await client.get(f"{gw.url}/result/{result['id']}")).json()["status"] == "timed_out"


async def test_running_fake_node_interrupted_on_cancel(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url)
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(60, steps=600)}})).json()["id"]

    async def slow_node_running() -> bool:
        progress = (await client.get(f"{gw.url}/result/{job}")).json()["progress"]
        return bool(progress) and progress["node"] == "2"

    await until(slow_node_running, "the slow node runs")
    r = await client.post(f"{gw.url}/result/{job}/cancel")
    assert r.json()["status"] == "cancelled"
    hist = await until(lambda: httpx.get(f"{fake.url}/history/{job}").json(), "the interrupted prompt's history")
    messages = [m[0] for m in hist[job]["status"]["messages"]]
    assert "execution_interrupted" in messages


async def test_sigterm_drains_in_flight_jobs_and_refuses_new_ones(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, SHUTDOWN_GRACE="20")
    ids = [(await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(0.6, prefix=f"d{i}")}})).json()["id"]
           for i in range(3)]
    streams = [asyncio.create_task(collect(client, "GET", f"{gw.url}/result/{i}/stream")) for i in ids]
    await until(lambda: fake.stats()["queue_remaining"] >= 1, "a job is in ComfyUI's hands")
    os.kill(gw.proc.proc.pid, signal.SIGTERM)

    async def refused():
        r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}})
        return r if r.status_code == 503 else None

    r = await until(refused, "new jobs refused while draining", timeout=15)
    assert int(r.headers["retry-after"]) >= 1
    assert "shutting down" in r.json()["detail"]
    # Results keep flowing while it drains: every job in flight completes.
    results = [(await s).events[-1].data["result"] for s in streams]
    assert [x["status"] for x in results] == ["completed"] * 3
    assert await asyncio.to_thread(gw.proc.proc.wait, 20) is not None
    assert "draining" in gw.log()


async def test_sigterm_grace_over_fails_the_rest_clearly(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, SHUTDOWN_GRACE="0.5")
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(30, steps=30)}})).json()["id"]
    stream = asyncio.create_task(collect(client, "GET", f"{gw.url}/result/{job}/stream"))
    await until(lambda: fake.stats()["queue_remaining"] >= 1, "the job is in ComfyUI's hands")
    os.kill(gw.proc.proc.pid, signal.SIGTERM)
    result = (await asyncio.wait_for(stream, 20)).events[-1].data["result"]
    assert result["status"] == "failed"
    assert "shut down before this job finished" in result["error"]["message"]
    await asyncio.to_thread(gw.proc.proc.wait, 20)


async def test_api_keys(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, API_KEYS="alpha-key, beta-key")
    body = {"input": {"workflow_json": empty_save()}}
    r = await client.post(gw.url + "/generate", json=body)
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = await client.post(gw.url + "/generate", json=body, headers={"Authorization": "Bearer alpha-kez"})
    assert r.status_code == 401
    r = await client.post(gw.url + "/generate/sync", json=body, headers={"Authorization": "Bearer beta-key"})
    assert r.status_code == 200 and r.json()["status"] == "completed"
    job = r.json()["id"]
    assert (await client.get(f"{gw.url}/result/{job}")).status_code == 401
    assert (await client.get(f"{gw.url}/result/{job}", headers={"X-API-Key": "alpha-key"})).status_code == 200
    assert (await client.get(r.json()["output"][0]["url"])).status_code == 401
    assert (await client.get(gw.url + "/queue-info")).status_code == 401
    # Health and the README stay open; the keys never appear in what the gateway says.
    assert (await client.get(gw.url + "/health")).status_code == 200
    assert (await client.get(gw.url + "/")).status_code == 200
    assert "alpha-key" not in gw.log() and "beta-key" not in gw.log()


async def test_cors_origins(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, CORS_ORIGINS="https://app.example")
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = await client.options(gw.url + "/generate", headers={"Origin": "https://app.example", **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    bad = await client.options(gw.url + "/generate", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in bad.headers
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}},
                          headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.json()["status"] == "completed"
