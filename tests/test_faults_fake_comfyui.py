"""What a real ComfyUI cannot do on demand, driven through the fake one: slow and failing
nodes, dropped websockets, restarts, lagging history, a full queue."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import Fake, Gateway, empty_save
from .support.sse import collect
from .support.wait import until


def slow(seconds: float, steps: int = 1, prefix: str = "slow") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": steps}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


async def wait_done(client: httpx.AsyncClient, gateway: Gateway, job_id: str, timeout: float = 60) -> dict:
    stream = await asyncio.wait_for(collect(client, "GET", f"{gateway.url}/result/{job_id}/stream"), timeout)
    return stream.events[-1].data["result"]


async def backend_connected(client: httpx.AsyncClient, gw: Gateway) -> bool:
    health = (await client.get(gw.url + "/health")).json()
    return all(b["websocket_connected"] for b in health["backends"])


def running_in_fake(fake: Fake) -> bool:
    return httpx.get(fake.url + "/queue", timeout=10).json()["queue_running"] != []


@pytest.fixture(scope="module")
def shared_fake(module_fake_factory) -> Fake:
    return module_fake_factory()


@pytest.fixture
def fake(shared_fake: Fake) -> Fake:
    """One fake for the module, reset to a clean state for each test."""
    return shared_fake.reset()


@pytest.fixture(scope="module")
def shared_gw(shared_fake: Fake, module_gateway_factory) -> Gateway:
    return module_gateway_factory(shared_fake.url, SSE_PING_SECONDS="0.3")


@pytest.fixture
async def gw(fake: Fake, shared_gw: Gateway, client: httpx.AsyncClient) -> Gateway:
    """The module's gateway, in front of the freshly reset fake, its websocket up again (an
    earlier test may have dropped or refused it)."""
    await until(lambda: backend_connected(client, shared_gw), "the gateway's websocket is connected")
    return shared_gw


async def test_gpu_kept_busy_next_prompt_already_queued(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    ids = [(await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(0.3, prefix=f"b{i}")}})).json()["id"]
           for i in range(4)]
    results = await asyncio.gather(*(wait_done(client, gw, i) for i in ids))
    assert all(r["status"] == "completed" for r in results)
    # While one prompt ran, the next one was already pending in ComfyUI's own queue
    # (max_queue_length counts pending prompts, not the running one).
    assert fake.stats()["max_queue_length"] >= 1


async def test_queue_full_is_429_and_queued_jobs_survive(fake: Fake, gateway_factory, client: httpx.AsyncClient):
    fake.control(hang=True)
    gw = gateway_factory(fake.url, MAX_QUEUE_SIZE="3", GENERATION_WORKERS="1")
    accepted = []
    refused = None
    for i in range(10):
        r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(prefix=f"q{i}")}})
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 202
        accepted.append(r.json()["id"])
    assert refused is not None, "the queue never filled"
    assert int(refused.headers["retry-after"]) >= 1
    assert "MAX_QUEUE_SIZE" in refused.json()["detail"]
    # 1 in ComfyUI's hands + 3 waiting were accepted.
    assert len(accepted) == 4
    fake.control(hang=False)
    results = await asyncio.gather(*(wait_done(client, gw, i) for i in accepted))
    assert [r["status"] for r in results] == ["completed"] * 4


async def test_stream_shows_queue_positions_descending(fake: Fake, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(fake.url, GENERATION_WORKERS="1")
    # Measure every stage once so estimates exist.
    assert (await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": slow(0.05)}})).status_code == 200
    ids = [(await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(0.25, prefix=f"p{i}")}})).json()["id"]
           for i in range(4)]
    stream = await collect(client, "GET", f"{gw.url}/result/{ids[-1]}/stream")
    positions = [e.data["queue_position"] for e in stream.events if e.event == "queue"]
    assert positions, [e.event for e in stream.events]
    seen = [p["position"] for p in positions]
    assert seen == sorted(seen, reverse=True) and seen[0] >= 1
    assert all(p["current_queue"] == "generation" for p in positions)
    assert all(p["estimated_wait_time"] is not None and p["estimated_wait_time"] > 0 for p in positions)
    ids_seen = [e.id for e in stream.events]
    assert len(ids_seen) == len(set(ids_seen))
    assert stream.events[-1].data["result"]["status"] == "completed"


async def test_progress_steps_and_keepalive(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    stream = await collect(client, "POST", gw.url + "/generate/stream",
                           json_body={"input": {"workflow_json": slow(1.2, steps=4)}})
    steps = [e.data["progress"] for e in stream.events if e.event == "progress" and e.data["progress"]["node"] == "2"]
    assert {(p["value"], p["max"]) for p in steps} >= {(1.0, 4.0), (2.0, 4.0), (3.0, 4.0)}
    assert all(p["node_type"] == "FakeSlow" for p in steps)
    assert any(c.startswith(": ping") for c in stream.comments)


async def test_sync_timeout_answers_202_and_the_job_goes_on(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    r = await client.post(gw.url + "/generate/sync?timeout=0.3", json={"input": {"workflow_json": slow(1.0)}})
    assert r.status_code == 202
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/result/{job_id}"
    assert r.json()["status"] in ("queued", "preprocessing", "generating")
    assert (await wait_done(client, gw, job_id))["status"] == "completed"


async def test_execution_error_and_others_unharmed(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    wf = {"1": {"class_type": "FakeFail", "inputs": {"message": "boom in node"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}
    bad, good = await asyncio.gather(
        client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": wf}}),
        client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}}),
    )
    assert bad.status_code == 422 and "boom in node" in bad.json()["error"]["message"]
    assert good.status_code == 200 and good.json()["status"] == "completed"


async def test_dropped_websocket_mid_job_still_completes(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    job_id = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(3.0)}})).json()["id"]
    await until(lambda: running_in_fake(fake), "the prompt runs in the fake")
    fake.control(drop_ws_now=True)
    # The drop happened while the prompt ran: it has not ended yet.
    assert fake.stats()["prompts_executed"] == 0 and running_in_fake(fake)
    result = await wait_done(client, gw, job_id, timeout=30)
    assert result["status"] == "completed", result
    assert result["output"][0]["filename"].startswith("slow")
    assert fake.stats()["ws_connections_opened"] >= 1  # the gateway reconnected
    assert fake.stats()["history_requests"] >= 1  # frames were missed: its outcome came from /history
    # And the next job runs on the new socket, its outcome known from its frames alone.
    asked = fake.stats()["history_requests"]
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": slow(0.3, prefix="next")}})
    assert r.json()["status"] == "completed"
    assert r.json()["output"][0]["filename"].startswith("next")
    assert fake.stats()["history_requests"] == asked


async def test_websocket_refused_for_a_while_then_jobs_settle(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    job_id = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(1.0)}})).json()["id"]
    await until(lambda: running_in_fake(fake), "the prompt runs in the fake")
    fake.control(refuse_ws=True, drop_ws_now=True)
    # The job ends in ComfyUI while no socket is there to tell the gateway...
    await until(lambda: fake.stats()["history_size"] == 1, "the prompt ended in the fake")
    # ...which tried to reconnect meanwhile, was refused, and so could not know.
    await until(lambda: fake.stats()["ws_connections_refused"] >= 1, "a refused reconnect")
    assert (await client.get(f"{gw.url}/result/{job_id}")).json()["status"] == "generating"
    fake.control(refuse_ws=False)
    result = await wait_done(client, gw, job_id, timeout=30)
    assert result["status"] == "completed", result
    assert fake.stats()["prompts_executed"] == 1


async def test_restarted_comfyui_job_is_retried_once(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    job_id = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(3.0)}})).json()["id"]
    await until(lambda: running_in_fake(fake), "the prompt runs in the fake")
    fake.control(restart=True)  # queue and history gone, sockets dropped
    assert fake.stats()["prompts_executed"] == 0  # the restart came before the prompt ended
    result = await wait_done(client, gw, job_id, timeout=30)
    assert result["status"] == "completed", result
    assert fake.stats()["prompts_received"] == 2  # the first attempt, then the retry


async def test_restarted_twice_job_fails_clearly(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    job_id = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(5.0)}})).json()["id"]
    for attempt in (1, 2):
        await until(lambda: fake.stats()["prompts_received"] == attempt and running_in_fake(fake),
                    f"attempt {attempt} runs in the fake")
        fake.control(restart=True)
    result = await wait_done(client, gw, job_id, timeout=30)
    assert result["status"] == "failed", result
    assert result["error"]["type"] == "prompt_lost"
    assert "restart" in result["error"]["message"]


async def test_lagging_history_is_waited_for(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    # The prompt ends (executing None sent) a while before ComfyUI has its history entry, and
    # frames went missing while it ran (a dropped socket), so the gateway must ask /history.
    fake.control(history_lag=1.0)
    job_id = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(1.5)}})).json()["id"]
    await until(lambda: running_in_fake(fake), "the prompt runs in the fake")
    fake.control(drop_ws_now=True)
    result = await wait_done(client, gw, job_id, timeout=30)
    assert result["status"] == "completed", result
    assert result["output"][0]["filename"].endswith(".png")
    assert fake.stats()["prompts_executed"] == 1 and fake.stats()["history_requests"] >= 1


async def test_big_output_of_another_kind_streams_to_disk(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    size = 20 * 1024 * 1024 + 123
    wf = {"1": {"class_type": "FakeBigOutput", "inputs": {"bytes": size, "filename_prefix": "vid", "output_key": "gifs"}}}
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.status_code == 200, r.text
    [out] = r.json()["output"]
    assert out["output_type"] == "gifs" and out["size_bytes"] == size
    got = await client.get(out["url"])
    assert len(got.content) == size


async def test_health_is_503_when_no_backend_answers(gateway_factory, client: httpx.AsyncClient):
    from .support.procs import free_port

    gw = gateway_factory(f"http://127.0.0.1:{free_port()}")
    r = await client.get(gw.url + "/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["backends"][0]["reachable"] is False
    assert body["backends"][0]["error"]
    # Jobs wait for a backend instead of failing; the queue says so.
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}})).json()

    async def waiting() -> bool:
        now = (await client.get(f"{gw.url}/result/{job['id']}")).json()
        return now["status"] == "generating" and now["message"] == "waiting for a free backend"

    await until(waiting, "the job waits for a free backend")
    cancelled = await client.post(f"{gw.url}/result/{job['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"


async def test_many_concurrent_clients_all_served(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    async def one(i: int):
        r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix=f"c{i}")}})
        return r.status_code, r.json()["status"]

    results = await asyncio.gather(*(one(i) for i in range(40)))
    assert results == [(200, "completed")] * 40
