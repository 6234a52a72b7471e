"""Many clients on one gateway (issue 15), against the real ComfyUI: named keys from
API_KEYS_FILE each see only their own jobs on every route, in memory and on Redis from every
process; a key over max_queued gets 429 while another is served; a higher priority submitted
last runs first while the backend is busy; /usage adds up to the jobs run; SIGHUP reloads."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from .conftest import empty_save
from .support.cluster import Cluster
from .support.procs import wait_http
from .support.sse import collect, read_events

KEYS = {"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef", "root": "root-key-0123456789abcdef"}


def write_keys(path: Path, **extra_entries: str) -> Path:
    sha = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in KEYS.items()}
    path.write_text(
        f'[keys.alice]\nkey_sha256 = "{sha["alice"]}"\nmax_queued = 1\n\n'
        f'[keys.bob]\nkey = "{KEYS["bob"]}"\nmax_priority = 5\n\n'
        f'[keys.root]\nkey_sha256 = "{sha["root"]}"\nadmin = true\n'
        + "".join(extra_entries.values()))
    return path


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def blur(size: int = 3072, prefix: str = "blur") -> dict:
    """Keeps a CPU ComfyUI busy for seconds: two wide blurs of a large image."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0x808080}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 31, "sigma": 10.0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }


@pytest.fixture(params=["memory", "redis"])
def nodes(request, comfyui, gateway_factory, tmp_path):
    """Gateway processes sharing one store: one in memory, or two on one Redis."""
    keys = write_keys(tmp_path / "keys.toml")
    if request.param == "memory":
        gw = gateway_factory(comfyui, API_KEYS_FILE=str(keys))
        yield [gw]
        gw.proc.stop()
        return
    cluster = Cluster(tmp_path / "cluster")
    yield [cluster.start(comfyui, API_KEYS_FILE=str(keys)) for _ in range(2)]
    cluster.stop()


async def test_each_key_sees_only_its_own_jobs_on_every_route_from_every_process(nodes, client):
    first = nodes[0].url
    rid = str(uuid.uuid4())
    body = {"input": {"request_id": rid, "workflow_json": empty_save(16, 8, 0x102030, "own"), "base64_outputs": True}}
    a = (await client.post(first + "/generate/sync", json=body, headers=auth("alice"))).json()
    b = (await client.post(nodes[-1].url + "/generate/sync", json=body, headers=auth("bob"))).json()
    # One request_id, two keys: two jobs, each id unique, each carrying the request_id as sent.
    assert a["status"] == b["status"] == "completed", (a, b)
    assert a["id"] != b["id"] and rid not in (a["id"], b["id"])
    assert a["request_id"] == b["request_id"] == rid and (a["key"], b["key"]) == ("alice", "bob")
    again = (await client.post(first + "/generate", json=body, headers=auth("alice"))).json()
    assert again["id"] == a["id"]  # idempotent within one key
    unknown = str(uuid.uuid4())
    file = a["output"][0]["url"].split("/outputs/", 1)[1]

    for node in nodes:
        url = node.url
        for who, mine, theirs in (("alice", a, b), ("bob", b, a)):
            h = auth(who)
            assert (await client.get(f"{url}/result/{mine['id']}", headers=h)).json()["id"] == mine["id"]
            # Another key's job answers exactly as an unknown id, on every route.
            for method, path in (("GET", "/result/{}"), ("GET", "/result/{}/stream"),
                                 ("POST", "/result/{}/cancel"), ("DELETE", "/result/{}")):
                hidden = await client.request(method, url + path.format(theirs["id"]), headers=h)
                missing = await client.request(method, url + path.format(unknown), headers=h)
                assert hidden.status_code == missing.status_code == 404, (method, path, hidden.text)
                assert hidden.json()["detail"] == missing.json()["detail"].replace(unknown, theirs["id"])
            listed = (await client.get(f"{url}/jobs", headers=h)).json()
            assert [j["id"] for j in listed["jobs"]] == [mine["id"]]
            # Listed without the inline base64 that the job's own result carries.
            assert mine["output"][0]["base64"] and listed["jobs"][0]["output"][0]["base64"] is None
            assert (await client.get(f"{url}/jobs", params={"key": "root"}, headers=h)).status_code == 403
            usage = (await client.get(f"{url}/usage", headers=h)).json()["keys"]
            assert list(usage) == [who] and usage[who]["jobs"]["completed"] == 1
            # /usage adds up to the job run: its bytes, its time on the backend and in the queues.
            assert usage[who]["output_bytes"] == sum(o["size_bytes"] for o in mine["output"]) > 0
            assert usage[who]["gpu_seconds"] == pytest.approx(mine["durations"]["generation"], abs=0.002)
            d = mine["durations"]
            waits = d["queue_wait"] + d["generation_wait"] + d["postprocess_wait"]
            assert usage[who]["queue_seconds"] == pytest.approx(waits, abs=0.002)
        theirs_file = f"{url}/outputs/{b['output'][0]['url'].split('/outputs/', 1)[1]}"
        assert (await client.get(f"{url}/outputs/{file}", headers=auth("alice"))).status_code == 200
        assert (await client.get(f"{url}/outputs/{file}", headers=auth("bob"))).status_code == 404
        assert (await client.get(theirs_file, headers=auth("alice"))).status_code == 404
        # The admin sees and filters every key's jobs.
        admin = auth("root")
        assert (await client.get(f"{url}/result/{a['id']}", headers=admin)).status_code == 200
        assert (await client.get(f"{url}/outputs/{file}", headers=admin)).status_code == 200
        everyone = (await client.get(f"{url}/jobs", headers=admin)).json()["jobs"]
        assert {j["id"] for j in everyone} == {a["id"], b["id"]}
        only_bob = (await client.get(f"{url}/jobs", params={"key": "bob", "status": "completed"}, headers=admin)).json()
        assert [j["id"] for j in only_bob["jobs"]] == [b["id"]]
        assert set((await client.get(f"{url}/usage", headers=admin)).json()["keys"]) == {"alice", "bob"}
        # Paging with the cursor: every job once, newest first, then the end.
        page1 = (await client.get(f"{url}/jobs", params={"limit": 1}, headers=admin)).json()
        page2 = (await client.get(f"{url}/jobs", params={"limit": 1, "cursor": page1["next_cursor"]},
                                  headers=admin)).json()
        assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == [b["id"], a["id"]]
        page3 = (await client.get(f"{url}/jobs", params={"limit": 1, "cursor": page2["next_cursor"]},
                                  headers=admin)).json()
        assert page3 == {"jobs": [], "next_cursor": None}
        later = {"since": "2100-01-01T00:00:00Z"}
        assert (await client.get(f"{url}/jobs", params=later, headers=admin)).json()["jobs"] == []
        assert (await client.get(f"{url}/usage", params=later, headers=admin)).json()["keys"] == {}
        for bad in ({"status": "done"}, {"cursor": "nonsense"}, {"since": "2026-01-01T00:00:00"}):
            r = await client.get(f"{url}/jobs", params=bad, headers=admin)
            assert r.status_code == 422 and list(bad)[0] in r.json()["detail"], r.text
        assert (await client.get(f"{url}/jobs")).status_code == 401


async def test_a_key_over_max_queued_gets_429_while_another_is_served(comfyui, gateway_factory, tmp_path, client):
    gw = gateway_factory(comfyui, API_KEYS_FILE=str(write_keys(tmp_path / "keys.toml")))
    try:
        slow = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": blur()}},
                                  headers=auth("alice"))).json()
        over = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}},
                                 headers=auth("alice"))
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
        assert "alice" in over.json()["detail"] and "max_queued is 1" in over.json()["detail"]
        served = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}},
                                   headers=auth("bob"))
        assert served.status_code == 202
        cancelled = await client.post(f"{gw.url}/result/{slow['id']}/cancel", headers=auth("alice"))
        assert cancelled.json()["status"] == "cancelled", cancelled.text  # it was still running
        stream = await asyncio.wait_for(collect(client, "GET", f"{gw.url}/result/{served.json()['id']}/stream",
                                                headers=auth("bob")), 120)
        assert stream.events[-1].data["result"]["status"] == "completed"
        again = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}},
                                  headers=auth("alice"))
        assert again.status_code == 200  # an ended job frees the key's place
        usage = (await client.get(gw.url + "/usage", headers=auth("root"))).json()["keys"]
        assert usage["alice"]["jobs"] == {"completed": 1, "failed": 0, "cancelled": 1, "timed_out": 0, "total": 2}
        assert usage["bob"]["jobs"]["total"] == 1
        # The same account as Prometheus counters labelled by key name.
        metrics = (await client.get(gw.url + "/metrics", headers=auth("root"))).text
        assert 'comfy_gateway_key_jobs_finished_total{key="alice",status="cancelled"} 1.0' in metrics
        assert 'comfy_gateway_key_jobs_finished_total{key="alice",status="completed"} 1.0' in metrics
        assert 'comfy_gateway_key_jobs_submitted_total{key="bob"} 1.0' in metrics
        gpu = [line for line in metrics.splitlines() if line.startswith('comfy_gateway_key_gpu_seconds_total{key="alice"}')]
        assert float(gpu[0].split()[-1]) == pytest.approx(usage["alice"]["gpu_seconds"], abs=0.01)
        assert (await client.get(gw.url + "/metrics", headers=auth("bob"))).status_code == 403  # not an admin
    finally:
        gw.proc.stop()


async def first_queue_event(client: httpx.AsyncClient, url: str, job_id: str, headers: dict) -> dict:
    async with client.stream("GET", f"{url}/result/{job_id}/stream", headers=headers) as r:
        async for event in read_events(r):
            if event.event == "queue":
                return event.data["queue_position"]
    raise AssertionError(f"{job_id}: no queue event")


def generation_start(result: dict) -> float:
    d = result["durations"]
    created = datetime.fromisoformat(result["created_at"]).timestamp()
    return created + d["queue_wait"] + d["preprocess"] + d["generation_wait"]


async def busy_generation_workers(client: httpx.AsyncClient, nodes: list, headers: dict, want: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        infos = [(await client.get(n.url + "/queue-info", headers=headers)).json() for n in nodes]
        if sum(i["queues"]["generation"]["busy"] for i in infos) == want:
            return
        assert loop.time() < deadline, infos
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_higher_priority_submitted_last_runs_first(store, comfyui, gateway_factory, tmp_path, client):
    keys = write_keys(tmp_path / "keys.toml")
    cluster = Cluster(tmp_path / "cluster")
    if store == "memory":
        nodes = [gateway_factory(comfyui, API_KEYS_FILE=str(keys), GENERATION_WORKERS="1")]
    else:  # submitted to one process, positions read from the other
        nodes = [cluster.start(comfyui, API_KEYS_FILE=str(keys), GENERATION_WORKERS="1") for _ in range(2)]
    submit_to, check_on = nodes[0], nodes[-1]
    try:
        h = auth("bob")
        # One slow job per generation slot (one per process): every slot busy, ComfyUI busy.
        blockers = [(await client.post(submit_to.url + "/generate", json={"input": {"workflow_json": blur()}},
                                       headers=h)).json()["id"] for _ in nodes]
        await busy_generation_workers(client, nodes, h, len(nodes))
        ids = []
        for name, priority in (("low1", 0), ("low2", 0), ("high", 5)):
            r = await client.post(submit_to.url + "/generate", headers=h, json={"input": {
                "workflow_json": empty_save(8, 8, 0, name), "priority": priority}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        low1, low2, high = ids
        # While the blockers run, the generation queue is ordered by priority, in every process.
        positions = [await asyncio.wait_for(first_queue_event(client, check_on.url, j, h), 60)
                     for j in (high, low1, low2)]
        assert [(p["current_queue"], p["position"]) for p in positions] == [
            ("generation", 0), ("generation", 1), ("generation", 2)], positions
        for blocker in blockers:
            cancelled = await client.post(f"{submit_to.url}/result/{blocker}/cancel", headers=h)
            assert cancelled.json()["status"] == "cancelled", cancelled.text  # still running: it held a slot
        done = {}
        for job_id in ids:
            stream = await asyncio.wait_for(collect(client, "GET", f"{check_on.url}/result/{job_id}/stream",
                                                    headers=h), 120)
            result = stream.events[-1].data["result"]
            assert result["status"] == "completed", result
            done[job_id] = result
        start = {job_id: generation_start(done[job_id]) for job_id in ids}
        if len(nodes) == 1:  # one slot: one after the other, the highest first
            assert start[high] < start[low1] < start[low2]
        else:  # a slot per process: high and low1 may start together, low2 waits for a free one
            assert start[high] < start[low2] and start[low1] < start[low2]
        over = await client.post(submit_to.url + "/generate", headers=h, json={"input": {
            "workflow_json": empty_save(), "priority": 6}})
        assert over.status_code == 422 and "max_priority" in over.json()["detail"]
    finally:
        if store == "memory":
            nodes[0].proc.stop()
        cluster.stop()


async def test_sighup_reloads_keys_and_keeps_them_when_the_file_is_bad(comfyui, gateway_factory, tmp_path, client):
    keys = write_keys(tmp_path / "keys.toml")
    gw = gateway_factory(comfyui, API_KEYS_FILE=str(keys))
    try:
        assert (await client.get(gw.url + "/jobs", headers=auth("alice"))).status_code == 200
        keys.write_text("[keys.alice\nthis is not toml")
        gw.proc.proc.send_signal(signal.SIGHUP)
        await wait_for_log(gw, "API_KEYS_FILE not reloaded")
        assert (await client.get(gw.url + "/jobs", headers=auth("alice"))).status_code == 200
        sha = hashlib.sha256(KEYS["bob"].encode()).hexdigest()
        keys.write_text(f'[keys.bob]\nkey_sha256 = "{sha}"\n')
        gw.proc.proc.send_signal(signal.SIGHUP)
        await wait_for_log(gw, "API_KEYS_FILE reloaded")
        assert (await client.get(gw.url + "/jobs", headers=auth("alice"))).status_code == 401
        assert (await client.get(gw.url + "/jobs", headers=auth("bob"))).status_code == 200
        for name, key in KEYS.items():
            assert key not in gw.log() and hashlib.sha256(key.encode()).hexdigest() not in gw.log()
        wait_http(gw.url + "/health", 5)
    finally:
        gw.proc.stop()


async def wait_for_log(gw, text: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in gw.log():
        assert loop.time() < deadline, f"{text!r} not logged:\n{gw.log()[-2000:]}"
        await asyncio.sleep(0.05)
