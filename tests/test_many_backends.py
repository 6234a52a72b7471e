"""Many ComfyUI backends behind one service: work goes to the least-loaded one in rotation, a
backend that stops answering leaves the rotation (its jobs in flight settle when it returns,
or fail clearly), and it rejoins when healthy. Two gateway processes on one Redis, two fakes."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from .conftest import Fake
from .support.cluster import Cluster, final_result
from .test_scaleout_redis import slow, submit


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def name(fake: Fake) -> str:
    return fake.url.split("://", 1)[1]


async def until(check, what: str, rounds: int = 400):
    """Wait (in small steps, bounded) for a condition the services reach by themselves."""
    for _ in range(rounds):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def backends_seen(client: httpx.AsyncClient, node) -> dict[str, dict]:
    info = (await client.get(node.url + "/queue-info")).json()
    return {b["name"]: b for b in info["backends"]}


async def test_work_goes_to_the_least_loaded_backend(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    busy, idle = fake_factory(), fake_factory()
    # Someone else (another service, another gateway) keeps `busy` loaded: three prompts queued.
    busy.control(hang=True)
    for _ in range(3):
        r = httpx.post(busy.url + "/prompt", timeout=10, json={"prompt": slow(0.1), "prompt_id": str(uuid.uuid4())})
        assert r.status_code == 200
    node = cluster.start(f"{busy.url},{idle.url}", GENERATION_WORKERS=2)
    await until(lambda: _remaining(client, node, name(busy), 3), "the gateway sees busy's queue")
    ids = [await submit(client, node.url, slow(0.2, prefix=f"l{i}")) for i in range(2)]
    results = await asyncio.gather(*(final_result(client, node, j) for j in ids))
    assert [(r["status"], r["backend"]) for r in results] == [("completed", name(idle))] * 2
    busy.control(hang=False)


async def _remaining(client, node, backend: str, n: int) -> bool:
    return (await backends_seen(client, node))[backend]["queue_remaining"] == n


async def test_equal_backends_share_the_load(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    f1, f2 = fake_factory(), fake_factory()
    for f in (f1, f2):
        f.control(hang=True)  # prompts stay queued, so each one's place is plain to see
    a = cluster.start(f"{f1.url},{f2.url}", GENERATION_WORKERS=2)
    b = cluster.start(f"{f1.url},{f2.url}", GENERATION_WORKERS=2)
    ids = []
    for i in range(4):
        ids.append(await submit(client, (a, b)[i % 2].url, slow(0.1, prefix=f"s{i}")))
        # Both processes see the queues as they are now before the next job is placed.
        for node in (a, b):
            await until(lambda: _total_remaining(client, node, [name(f1), name(f2)], i + 1),
                        f"{node.url} sees {i + 1} prompts queued")
    # Each job went to the backend with the shorter queue: two each.
    assert [f1.stats()["queue_pending"], f2.stats()["queue_pending"]] == [2, 2]
    for f in (f1, f2):
        f.control(hang=False)
    ids += [await submit(client, (a, b)[i % 2].url, slow(0.1, prefix=f"t{i}")) for i in range(8)]
    results = await asyncio.gather(*(final_result(client, a, j) for j in ids))
    assert [r["status"] for r in results] == ["completed"] * 12
    assert f1.stats()["prompts_executed"] + f2.stats()["prompts_executed"] == 12


async def _total_remaining(client, node, backends: list[str], n: int) -> bool:
    seen = await backends_seen(client, node)
    return sum(seen[b]["queue_remaining"] for b in backends) == n


async def test_backend_down_mid_load_leaves_and_rejoins(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    f1, f2 = fake_factory(), fake_factory()
    a = cluster.start(f"{f1.url},{f2.url}", BACKEND_LOST_AFTER=60)
    b = cluster.start(f"{f1.url},{f2.url}", BACKEND_LOST_AFTER=60)
    ids = [await submit(client, (a, b)[i % 2].url, slow(0.25, prefix=f"d{i}")) for i in range(16)]
    await until(lambda: _executed(f2, 2), "f2 ran a few jobs")
    f2.control(down=True)
    # /health names backends by label (backend-<index>), never by address.
    health = await until(lambda: _out_of_rotation(client, a, "backend-1"), "/health shows f2 gone")
    assert health["status"] == "degraded"
    gone = {x["name"]: x for x in health["backends"]}["backend-1"]
    assert gone["reachable"] is False and gone["error"] and gone["state"] == "down"
    assert str(f2.url.rsplit(":", 1)[1]) not in str(health)
    await until(lambda: _out_of_rotation(client, b, "backend-1"), "the other process sees it too")
    executed_while_down = f2.stats()["prompts_received"]
    await until(lambda: _executed(f1, 8), "f1 carries on alone")
    f2.control(down=False)
    results = await asyncio.gather(*(final_result(client, b, j) for j in ids))
    # Jobs caught on f2 when it went down were settled from its history once it came back.
    assert [r["status"] for r in results] == ["completed"] * 16, [r["message"] for r in results]
    assert f1.stats()["prompts_executed"] + f2.stats()["prompts_executed"] == 16
    for node in (a, b):
        await until(lambda: _in_rotation(client, node, name(f2)), "f2 rejoins")
    # ...and takes work again.
    more = [await submit(client, a.url, slow(0.1, prefix=f"m{i}")) for i in range(8)]
    assert all(r["status"] == "completed" for r in await asyncio.gather(*(final_result(client, a, j) for j in more)))
    assert f2.stats()["prompts_received"] > executed_while_down


async def test_backend_gone_for_good_fails_its_jobs_clearly(fake_factory, cluster: Cluster, client: httpx.AsyncClient):
    f1, f2 = fake_factory(), fake_factory()
    f2.control(hang=True)  # f2 finishes nothing: whatever reaches it is caught when it goes
    a = cluster.start(f"{f1.url},{f2.url}", BACKEND_LOST_AFTER=2)
    ids = [await submit(client, a.url, slow(0.5, prefix=f"g{i}")) for i in range(8)]
    await until(lambda: _in_flight(client, a, name(f2)), "a prompt is in flight on f2")
    f2.control(down=True)
    results = await asyncio.gather(*(final_result(client, a, j) for j in ids))
    failed = [r for r in results if r["status"] == "failed"]
    assert failed, "no job was caught on f2"
    assert all(r["status"] == "completed" for r in results if r not in failed)
    for r in failed:
        assert r["backend"] == name(f2) and r["error"]["kind"] == "backend"
        assert "unreachable" in r["error"]["message"] and name(f2) in r["error"]["message"]
    assert all(r["backend"] == name(f1) for r in results if r["status"] == "completed")


async def _executed(fake: Fake, n: int) -> bool:
    return fake.stats()["prompts_executed"] >= n


async def _out_of_rotation(client, node, backend: str):
    """/health once it shows the backend unreachable and out of rotation (its websocket gone)."""
    r = await client.get(node.url + "/health")
    seen = {x["name"]: x for x in r.json()["backends"]}[backend]
    return r.json() if not seen["reachable"] and not seen["in_rotation"] else None


async def _in_rotation(client, node, backend: str) -> bool:
    return (await backends_seen(client, node))[backend]["in_rotation"]


async def _in_flight(client, node, backend: str) -> bool:
    return (await backends_seen(client, node))[backend]["in_flight"] > 0
