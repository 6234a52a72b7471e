"""Jobs waiting behind a busy backend answer every read as a running one would: the memory
store keeps a waiting job packed (jobs/memory_packed.py) until a worker takes it, and nothing
a client sees may tell. Real gateway process, fake ComfyUI told to hang (it takes the first
prompt and runs nothing), so the next jobs wait in the gateway's own generation queue."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .support.sse import collect
from .support.wait import until

NODES = 52


def big_workflow(color: int) -> dict[str, Any]:
    """EmptyImage -> SaveImage and 50 unconnected nodes: the size of a real workflow."""
    wf: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "q"}},
    }
    for i in range(NODES - 2):
        wf[f"pad{i}"] = {"class_type": "EmptyImage",
                         "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}}
    return wf


def body(color: int, request_id: str, priority: int = 0) -> dict[str, Any]:
    return {"input": {"workflow_json": big_workflow(color), "request_id": request_id, "priority": priority}}


async def final(client: httpx.AsyncClient, url: str, job_id: str) -> dict[str, Any]:
    stream = await collect(client, "GET", f"{url}/result/{job_id}/stream")
    return stream.events[-1].data["result"]


async def test_waiting_jobs_answer_every_read_then_run_their_own_prompt(fake_factory, gateway_factory,
                                                                         client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, GENERATION_WORKERS="1", PACK_QUEUED_AFTER="0")  # each waiting job packed
    fake.control(hang=True)
    submitted: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}
    rids = {name: str(uuid.uuid4()) for name in ("busy", "w0", "w1", "w2")}
    for name, color, priority in [("busy", 1, 0), ("w0", 2, 0), ("w1", 3, 0), ("w2", 4, 3)]:
        submitted[name] = body(color, rids[name], priority)
        r = await client.post(gw.url + "/generate", json=submitted[name])
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
        if name == "busy":  # the only generation worker holds it, at the hung backend
            await until(lambda: _in_flight(gw.url) == 1, "the first job at the backend")

    for name in ("w0", "w1", "w2"):
        r = (await client.get(f"{gw.url}/result/{ids[name]}")).json()
        assert (r["status"], r["message"], r["request_id"], r["key"]) == (
            "generating", "waiting for a free backend", rids[name], "anonymous"), r
        assert r["priority"] == submitted[name]["input"]["priority"]
        assert r["durations"]["queue_wait"] is not None and r["finished_at"] is None

    async def places() -> dict[str, int | None]:
        return {n: (await client.get(f"{gw.url}/api/v2/jobs/{ids[n]}")).json()["queue_position"]
                for n in ("w0", "w1", "w2")}

    assert await places() == {"w2": 1, "w0": 2, "w1": 3}  # the higher priority first, then in order

    # The prompt built for it (its output under the job's own folder) is there while it waits.
    shown = (await client.get(f"{gw.url}/api/v2/jobs/{ids['w0']}/workflow")).json()["workflow"]
    assert len(shown) == NODES and shown["2"]["inputs"]["filename_prefix"] == f"{ids['w0']}/q"
    assert shown["1"]["inputs"]["color"] == 2

    listed = (await client.get(f"{gw.url}/jobs", params={"status": "generating", "limit": 10})).json()["jobs"]
    assert [j["id"] for j in listed] == [ids[n] for n in ("w2", "w1", "w0", "busy")]
    assert (await client.get(f"{gw.url}/jobs", params={"status": "completed"})).json()["jobs"] == []
    v2 = (await client.get(f"{gw.url}/api/v2/jobs", params={"status": "queued"})).json()["jobs"]
    assert {j["id"] for j in v2} >= {ids[n] for n in ("w0", "w1", "w2")}

    # The same request again is the same job; another one under its request_id is refused.
    again = await client.post(gw.url + "/generate", json=submitted["w0"])
    assert again.status_code == 202 and again.json()["id"] == ids["w0"]
    assert (await client.post(gw.url + "/generate", json=body(99, rids["w0"]))).status_code == 409

    r = await client.post(f"{gw.url}/result/{ids['w1']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await client.get(f"{gw.url}/result/{ids['w1']}")).json()["status"] == "cancelled"
    assert await places() == {"w2": 1, "w0": 2, "w1": None}

    fake.control(hang=False)
    for name in ("busy", "w2", "w0"):
        result = await final(client, gw.url, ids[name])
        assert result["status"] == "completed", result
        assert [o["node_id"] for o in result["output"]] == ["2"]
    # ComfyUI was sent the prompt that was shown while the job waited.
    ran = (await client.get(f"{fake.url}/history/{ids['w0']}")).json()[ids["w0"]]["prompt"][2]
    assert ran == shown


def _in_flight(url: str) -> int:
    health = httpx.get(url + "/health", timeout=10).json()
    return sum(b["in_flight"] for b in health["backends"])
