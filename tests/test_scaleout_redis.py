"""Several gateway processes on one Redis act as one service: a job submitted to one is served
by any other, queue positions agree everywhere, a process killed with -9 loses no job and runs
none twice, and a restart finds queued jobs still queued. Real processes, real ports, a real
Redis, against the real ComfyUI and the fake one."""

from __future__ import annotations

import asyncio
import io
import uuid

import httpx
import pytest
from PIL import Image

from .conftest import Fake, empty_save
from .support.cluster import Cluster, final_result
from .support.procs import free_port
from .support.sse import collect
from .support.wait import until


def slow(seconds: float, prefix: str = "slow") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": 2}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


async def submit(client: httpx.AsyncClient, url: str, workflow: dict, **extra) -> str:
    r = await client.post(url + "/generate", json={"input": {"workflow_json": workflow, **extra}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def test_submit_to_one_stream_and_fetch_from_another_real_comfyui(
        comfyui: str, cluster: Cluster, client: httpx.AsyncClient):
    a, b, c = cluster.start(comfyui), cluster.start(comfyui), cluster.start(comfyui)
    job_id = await submit(client, a.url, empty_save(24, 16, 0x3366CC, "x"))
    result = await final_result(client, b, job_id)
    assert result["status"] == "completed", result
    # The output's url points at the process that answered; the file is served by any of them.
    out = result["output"][0]
    assert out["url"].startswith(b.url)
    for node in (a, b, c):
        got = await client.get(out["url"].replace(b.url, node.url))
        assert got.status_code == 200
        img = Image.open(io.BytesIO(got.content)).convert("RGB")
        assert img.size == (24, 16) and img.getpixel((0, 0)) == (0x33, 0x66, 0xCC)
    same = (await client.get(f"{c.url}/result/{job_id}")).json()
    assert same["status"] == "completed" and same["output"][0]["filename"] == out["filename"]
    # A blocking call on one process, resent to another with the same request_id: one job.
    rid = str(uuid.uuid4())
    body = {"input": {"request_id": rid, "workflow_json": empty_save(8, 8)}}
    first = await client.post(c.url + "/generate/sync", json=body)
    again = await client.post(a.url + "/generate/sync", json=body)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"] == rid
    assert first.json()["created_at"] == again.json()["created_at"]
    other = {"input": {"request_id": rid, "workflow_json": empty_save(9, 9)}}
    assert (await client.post(b.url + "/generate", json=other)).status_code == 409


async def test_queue_positions_and_sizes_agree_on_every_process(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)  # ComfyUI takes prompts but runs none: the queue stands still
    nodes = [cluster.start(fake.url, GENERATION_WORKERS=1) for _ in range(3)]
    ids = [await submit(client, nodes[i % 3].url, empty_save(prefix=f"p{i}")) for i in range(7)]
    # 3 processes x 1 slot: 3 prompts in ComfyUI's hands, 4 jobs waiting for generation.
    for _ in range(200):
        infos = [(await client.get(n.url + "/queue-info")).json() for n in nodes]
        if all(i["queues"]["generation"]["waiting"] == 4 for i in infos):
            break
        await asyncio.sleep(0.05)
    assert [i["queues"]["generation"]["waiting"] for i in infos] == [4, 4, 4]
    assert {i["waiting"] for i in infos} == {4}

    async def position(node, job_id) -> int | None:
        stream = await collect(client, "GET", f"{node.url}/result/{job_id}/stream", stop_after=4)
        return [e for e in stream.events if e.data["status"] != "final_result"][-1].data["queue_position"]["position"]

    table = [[await position(n, j) for j in ids] for n in nodes]
    assert table[0] == table[1] == table[2], table
    assert sorted(p for p in table[0] if p is not None) == [0, 1, 2, 3]
    fake.control(hang=False)
    results = await asyncio.gather(*(final_result(client, nodes[(i + 1) % 3], j) for i, j in enumerate(ids)))
    assert [r["status"] for r in results] == ["completed"] * 7


async def test_kill_9_mid_load_every_job_ends_exactly_once(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    a, b = cluster.start(fake.url), cluster.start(fake.url)
    n = 24
    ids = [await submit(client, (a, b)[i % 2].url, slow(0.15, prefix=f"k{i}")) for i in range(n)]
    # Let the load get going, then kill one process with jobs in every stage of its hands.
    for _ in range(400):
        if fake.stats()["prompts_executed"] >= 4:
            break
        await asyncio.sleep(0.05)
    a.kill()
    results = await asyncio.gather(*(final_result(client, b, j) for j in ids))
    assert [r["status"] for r in results] == ["completed"] * n, [r["message"] for r in results]
    stats = fake.stats()
    # Each job reached ComfyUI once and ran once: nothing lost, nothing run twice.
    assert stats["prompts_received"] == stats["prompts_executed"] == n
    history = httpx.get(fake.url + "/history", timeout=10).json()
    assert set(ids) <= set(history)
    for job_id in ids:
        events = (await collect(client, "GET", f"{b.url}/result/{job_id}/stream")).events
        assert [e.event for e in events].count("final_result") == 1
        statuses = [e.data["status"] for e in events if e.event == "status"]
        assert statuses[0] == "queued" and "postprocessing" in statuses
    result = results[-1]
    got = await client.get(result["output"][0]["url"])
    assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "took over job" in b.log()


async def test_restart_finds_queued_jobs_still_queued(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    # The first process has no ComfyUI to talk to: every job waits for a backend.
    first = cluster.start(f"http://127.0.0.1:{free_port()}")
    ids = [await submit(client, first.url, empty_save(prefix=f"r{i}")) for i in range(5)]
    for _ in range(200):
        info = (await client.get(first.url + "/queue-info")).json()
        if info["queues"]["generation"]["waiting"] == 5:
            break
        await asyncio.sleep(0.05)
    assert info["queues"]["generation"]["waiting"] == 5
    first.kill()
    fake: Fake = fake_factory()
    second = cluster.start(fake.url)
    results = await asyncio.gather(*(final_result(client, second, j) for j in ids))
    assert [r["status"] for r in results] == ["completed"] * 5
    assert fake.stats()["prompts_executed"] == 5


async def test_api_workers_2_share_the_redis_store(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)  # ComfyUI takes prompts but runs none
    node = cluster.start(fake.url, API_WORKERS=2, GENERATION_WORKERS=1)
    # Two worker processes, one generation slot each: two jobs are only both in ComfyUI's
    # hands if both processes took one, each under its own websocket clientId.
    ids = [await submit(client, node.url, empty_save(prefix=f"s{i}")) for i in range(2)]

    def client_ids() -> set[str]:
        pending = httpx.get(fake.url + "/queue", timeout=10).json()["queue_pending"]
        return {item[3]["client_id"] for item in pending}

    await until(lambda: len(client_ids()) == 2, "both worker processes posted a prompt")
    fake.control(hang=False)
    assert [(await final_result(client, node, j))["status"] for j in ids] == ["completed"] * 2

    async def one(i: int):
        r = await client.post(node.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix=f"w{i}")}})
        return r.status_code, r.json()["status"]

    assert await asyncio.gather(*(one(i) for i in range(24))) == [(200, "completed")] * 24


async def _prompt_reached(fake: Fake, n: int) -> bool:
    return fake.stats()["prompts_received"] >= n


async def test_take_over_of_a_prompt_still_queued_on_comfyui(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)
    first = cluster.start(fake.url)
    job_id = await submit(client, first.url, empty_save(prefix="q"))
    await until(lambda: _prompt_reached(fake, 1), "the prompt reached ComfyUI")
    first.kill()  # its websocket, the only one ComfyUI reports this prompt to, is gone
    second = cluster.start(fake.url)
    await until(lambda: _message_has(client, second, job_id, "taken over"), "the second process took it over")
    fake.control(hang=False)
    result = await final_result(client, second, job_id)
    assert result["status"] == "completed", result
    assert fake.stats()["prompts_received"] == fake.stats()["prompts_executed"] == 1


async def test_take_over_of_a_prompt_comfyui_forgot_submits_it_again(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)
    first = cluster.start(fake.url)
    job_id = await submit(client, first.url, empty_save(prefix="f"))
    await until(lambda: _prompt_reached(fake, 1), "the prompt reached ComfyUI")
    first.kill()
    fake.control(restart=True, hang=False)  # ComfyUI restarts: queue and history are gone
    second = cluster.start(fake.url)
    result = await final_result(client, second, job_id)
    assert result["status"] == "completed", result
    # Sent twice (the restarted ComfyUI had forgotten the first), run once.
    assert fake.stats()["prompts_received"] == 2 and fake.stats()["prompts_executed"] == 1


async def _message_has(client: httpx.AsyncClient, node, job_id: str, text: str) -> bool:
    return text in (await client.get(f"{node.url}/result/{job_id}")).json()["message"]


async def _generation_idle(client: httpx.AsyncClient, node) -> bool:
    return (await client.get(node.url + "/queue-info")).json()["queues"]["generation"]["busy"] == 0


async def test_cancel_on_one_process_frees_the_worker_of_another(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)  # the prompt waits in ComfyUI's queue: deleting it sends no frame
    a = cluster.start(fake.url, GENERATION_WORKERS=1)
    job_id = await submit(client, a.url, empty_save(prefix="c"))
    await until(lambda: _prompt_reached(fake, 1), "the prompt reached ComfyUI")
    b = cluster.start(fake.url)
    r = await client.post(f"{b.url}/result/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # a's worker learns it through the store and lets the job go: its one slot is free again.
    await until(lambda: _generation_idle(client, a), "a's generation worker is free")
    assert (await client.get(f"{a.url}/result/{job_id}")).json()["status"] == "cancelled"
    fake.control(hang=False)
    b.kill()  # only a can run the next job, on the slot the cancel freed
    nxt = await submit(client, a.url, empty_save(prefix="n"))
    assert (await final_result(client, a, nxt))["status"] == "completed"
    assert fake.stats()["prompts_executed"] == 1


async def test_sigterm_hands_held_jobs_to_another_process_at_once(
        fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    fake: Fake = fake_factory()
    fake.control(hang=True)
    # Leases of ten minutes: if b gets the job, it is because a handed it over, not a timeout.
    a = cluster.start(fake.url, LEASE_SECONDS=600, SHUTDOWN_GRACE=0.5)
    job_id = await submit(client, a.url, empty_save(prefix="h"))
    await until(lambda: _prompt_reached(fake, 1), "the prompt reached ComfyUI")
    b = cluster.start(fake.url, LEASE_SECONDS=600)
    a.proc.stop()  # SIGTERM: a drains for SHUTDOWN_GRACE, then gives back what it still holds
    await until(lambda: _message_has(client, b, job_id, "taken over"), "b took the job over")
    fake.control(hang=False)
    result = await final_result(client, b, job_id)
    assert result["status"] == "completed", result
    assert fake.stats()["prompts_received"] == fake.stats()["prompts_executed"] == 1
