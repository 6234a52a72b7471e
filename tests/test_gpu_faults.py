"""Recovery from GPU faults, driven through the fake ComfyUI (a CPU ComfyUI never runs out of
GPU memory on demand): out-of-memory freed and retried once, the circuit breaker, fatal CUDA
errors that keep a backend out until its ComfyUI restarted. The fake reports them with the
exact execution_error payload ComfyUI builds (torch.OutOfMemoryError plus ComfyUI's TIPS,
torch.AcceleratorError for an illegal memory access)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import httpx
import pytest

from .conftest import Fake, Gateway, empty_save
from .test_faults_fake_comfyui import slow


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    """Wait, in small steps and bounded, for a state the services reach by themselves."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def backend_state(client: httpx.AsyncClient, gw: Gateway) -> str:
    return (await client.get(gw.url + "/health")).json()["backends"][0]["state"]


@pytest.fixture
def fake(fake_factory) -> Fake:
    return fake_factory()


async def test_out_of_memory_frees_memory_and_runs_once_more(fake: Fake, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(fake.url)
    fake.control(oom_next=1)
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="oom1")}})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    stats = fake.stats()
    assert stats["free_requests"] == 1 and stats["prompts_received"] == 2
    metrics = (await client.get(gw.url + "/metrics")).text
    assert 'comfy_gateway_oom_retries_total{backend="%s"} 1.0' % fake.url.split("://")[1] in metrics


async def test_out_of_memory_twice_fails_saying_so(fake: Fake, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(fake.url)
    fake.control(oom_next=2)
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="oom2")}})
    body = r.json()
    assert body["status"] == "failed", body
    assert "out of GPU memory" in body["error"]["message"] and "twice" in body["error"]["message"]
    assert "POST /free" in body["error"]["message"]
    assert body["error"]["details"]["exception_type"] == "torch.OutOfMemoryError"
    assert fake.stats()["free_requests"] == 1 and fake.stats()["prompts_received"] == 2
    # A workflow that fails by its own fault is not retried and frees nothing.
    wf = {"1": {"class_type": "FakeFail", "inputs": {"message": "my own bug"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.json()["status"] == "failed" and fake.stats()["free_requests"] == 1


async def test_circuit_breaker_cools_down_then_probes_back(fake: Fake, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(fake.url, BREAKER_THRESHOLD="2", BREAKER_COOLDOWN="10")
    assert await until(lambda: _ready(client, gw), "/ready at start")
    fake.control(oom_next=2)  # one job: out of memory, freed, out of memory again = 2 in a row
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="cb1")}})
    assert r.json()["status"] == "failed"
    health = (await client.get(gw.url + "/health")).json()
    [b] = health["backends"]
    assert b["state"] == "cooling_down" and b["breaker"]["state"] == "open" and b["in_rotation"] is False
    assert (await client.get(gw.url + "/ready")).status_code == 503
    metrics = (await client.get(gw.url + "/metrics")).text
    assert 'comfy_gateway_backend_state{backend="%s",state="cooling_down"} 1.0' % fake.url.split("://")[1] in metrics
    # A job sent meanwhile waits (it is not refused, and not sent to the backend)...
    received = fake.stats()["prompts_received"]
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix="cb2")}})).json()
    assert job["status"] in ("queued", "preprocessing", "generating")
    assert await backend_state(client, gw) == "cooling_down"
    assert fake.stats()["prompts_received"] == received
    # ...and runs once the cool-down passed and the probe found the backend well.
    done = (await client.post(f"{gw.url}/generate/sync", json={"input": {"workflow_json": empty_save(prefix="cb3")}})).json()
    assert done["status"] == "completed"
    assert await until(lambda: _status(client, gw, job["id"], "completed"), "the waiting job ran")
    assert await backend_state(client, gw) == "ready"


async def test_fatal_cuda_error_keeps_backend_out_until_comfyui_restarts(fake: Fake, gateway_factory,
                                                                          client: httpx.AsyncClient):
    gw = gateway_factory(fake.url)
    assert await until(lambda: _ready(client, gw), "/ready at start")
    fake.control(cuda_fatal_next=1)
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="cu1")}})
    body = r.json()
    assert body["status"] == "failed" and "illegal memory access" in body["error"]["message"]
    assert body["error"]["details"]["exception_type"] == "torch.AcceleratorError"
    health = await client.get(gw.url + "/health")
    assert health.status_code == 503
    [b] = health.json()["backends"]
    assert b["state"] == "failed_until_restart" and "illegal memory access" in b["fatal_error"]
    assert (await client.get(gw.url + "/ready")).status_code == 503
    # A job waits for the backend instead of hitting the broken GPU...
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(0.1, prefix="cu2")}})).json()
    # ...also across a mere network blip (the same ComfyUI process, still broken: its history
    # still holds the failed prompt)...
    opened = fake.stats()["ws_connections_opened"]
    fake.control(drop_ws_now=True)
    await until(lambda: _stat_above(fake, "ws_connections_opened", opened), "the gateway reconnected")
    assert await backend_state(client, gw) == "failed_until_restart"
    # ...and runs once the ComfyUI restarted (its GPU is well again).
    fake.control(restart=True)
    assert await until(lambda: _status(client, gw, job["id"], "completed"), "the waiting job ran after the restart")
    assert await backend_state(client, gw) == "ready"
    assert (await client.get(gw.url + "/health")).status_code == 200


async def _ready(client: httpx.AsyncClient, gw: Gateway) -> bool:
    return (await client.get(gw.url + "/ready")).status_code == 200


async def _status(client: httpx.AsyncClient, gw: Gateway, job_id: str, status: str) -> bool:
    now = (await client.get(f"{gw.url}/result/{job_id}")).json()
    assert now["status"] in ("queued", "preprocessing", "generating", "postprocessing", status), now
    return now["status"] == status


async def _stat_above(fake: Fake, key: str, value: int) -> bool:
    return fake.stats()[key] > value


def test_which_failures_are_the_gpus():
    from comfy_gateway.comfy.errors import BackendError, ExecutionFailed, PromptRejected
    from comfy_gateway.comfy.faults import backend_caused, is_gpu_fatal, is_out_of_memory
    from comfy_gateway.testing.fake.gpu import ILLEGAL_ACCESS, OOM_MESSAGE

    oom = ExecutionFailed({"exception_type": "torch.OutOfMemoryError", "exception_message": OOM_MESSAGE + "\n"})
    old_oom = ExecutionFailed({"exception_type": "RuntimeError", "exception_message": "CUDA out of memory. Tried"})
    fatal = ExecutionFailed({"exception_type": "torch.AcceleratorError", "exception_message": ILLEGAL_ACCESS})
    assert_ = ExecutionFailed({"exception_type": "RuntimeError",
                               "exception_message": "CUDA error: device-side assert triggered\n"})
    mine = ExecutionFailed({"exception_type": "ValueError", "exception_message": "bad width"})
    assert [is_out_of_memory(e) for e in (oom, old_oom, fatal, assert_, mine)] == [True, True, False, False, False]
    assert [is_gpu_fatal(e) for e in (oom, old_oom, fatal, assert_, mine)] == [False, False, True, True, False]
    assert backend_caused(BackendError("down")) and not backend_caused(mine)
    assert not backend_caused(PromptRejected({"error": {"message": "x"}}))
