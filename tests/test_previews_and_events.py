"""Live previews on a job's stream (the fake sends binary frames exactly as ComfyUI's
server.py builds them), event webhooks, cancel_on_disconnect, and progress that reads right."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import pytest
from PIL import Image

from comfy_gateway.comfy.previews import parse_frame
from comfy_gateway.comfy.tracker import PromptTracker
from comfy_gateway.pipeline.preview_hub import PreviewHub
from comfy_gateway.testing.fake.previews import preview_image, preview_jpeg, preview_with_metadata

from .conftest import WEBHOOK_SECRET, Fake, Gateway, empty_save
from .support.sse import collect, read_events
from .test_gpu_faults import until


def two_slow(steps: int, then_wait: float) -> dict:
    """EmptyImage -> FakeSlow (quick steps, one preview each) -> FakeSlow (one long step) -> SaveImage."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": 0.05 * steps, "steps": steps}},
        "3": {"class_type": "FakeSlow", "inputs": {"images": ["2", 0], "seconds": then_wait, "steps": 1}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "pv"}},
    }


@pytest.fixture
def fake(fake_factory) -> Fake:
    f = fake_factory()
    f.control(previews=True)
    return f


@pytest.fixture
def gw(fake: Fake, gateway_factory) -> Gateway:
    return gateway_factory(fake.url)


def grey(b64: str) -> int:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("L").getpixel((4, 4))


def test_preview_frames_of_both_kinds_are_read():
    jpeg = preview_jpeg(3, 4)
    with_meta = parse_frame(preview_with_metadata(jpeg, "p-1", "7"))
    assert (with_meta.prompt_id, with_meta.node_id, with_meta.mime, with_meta.image) == ("p-1", "7", "image/jpeg", jpeg)
    plain = parse_frame(preview_image(jpeg, "PNG"))
    assert (plain.prompt_id, plain.node_id, plain.mime, plain.image) == (None, None, "image/png", jpeg)
    assert parse_frame(b"\x00\x00\x00\x03hello") is None  # a TEXT frame is no preview


async def test_plain_preview_goes_to_the_prompt_running_now():
    # The older frame names no prompt: it belongs to the node the tracker last saw running.
    got = []
    tracker = PromptTracker("p", {"5": {"class_type": "KSampler"}}, None, got.append)
    tracker.on_frame("progress", {"node": "5", "value": 3, "max": 20, "prompt_id": "p"})
    tracker.on_preview(parse_frame(preview_image(b"jpeg-bytes")))
    assert [(p.node, p.node_type, p.value, p.max, p.image) for p in got] == [("5", "KSampler", 3, 20, b"jpeg-bytes")]


async def test_a_slow_subscriber_keeps_only_the_latest_preview():
    hub = PreviewHub()
    sub = hub.subscribe("job")
    for step in range(1, 6):
        hub.publish("job", _preview(step))
    event = sub.take()
    assert event.n == 5 and event.preview.value == 5 and sub.dropped == 4 and sub.take() is None
    late = hub.subscribe("job")
    assert late.take().n == 5  # a late follower gets the latest one only


def _preview(step: int):
    from comfy_gateway.comfy.previews import Preview
    return Preview(node="2", node_type="FakeSlow", value=step, max=5, mime="image/jpeg", image=b"x")


async def test_previews_on_the_stream_never_in_the_history(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    stream = await collect(client, "POST", gw.url + "/generate/stream",
                           json_body={"input": {"workflow_json": two_slow(5, 0.3), "previews": True}})
    assert stream.events[-1].data["result"]["status"] == "completed"
    previews = [e for e in stream.events if e.event == "preview"]
    assert previews, [e.event for e in stream.events]
    for p in previews:
        assert p.id is None  # not part of the stored events a client resumes from
        assert (p.data["node"], p.data["node_type"], p.data["steps"]) in (("2", "FakeSlow", 5), ("3", "FakeSlow", 1))
        assert p.data["image"]["content_type"] == "image/jpeg"
        # The image the fake drew for that step: grey level = 255 * step / steps.
        assert abs(grey(p.data["image"]["base64"]) - 255 * p.data["step"] / p.data["steps"]) <= 3
    order = [(p.data["node"], p.data["step"]) for p in previews]
    assert order == sorted(order) and [p.data["n"] for p in previews] == sorted(p.data["n"] for p in previews)
    job_id = stream.events[-1].data["result"]["id"]
    again = await collect(client, "GET", f"{gw.url}/result/{job_id}/stream")
    assert not [e for e in again.events if e.event == "preview"]
    assert [e.id for e in again.events] == [str(i) for i in range(1, len(again.events) + 1)]
    # The Python client reads them too.
    from comfy_gateway.client import Client

    with Client(gw.url) as c:
        events = await asyncio.to_thread(lambda: list(c.stream(two_slow(3, 0.1), previews=True)))
    seen = [e for e in events if e.event == "preview"]
    assert seen and seen[0].status == "generating" and seen[0].image["content_type"] == "image/jpeg"
    # A job that did not ask for previews gets none.
    plain = await collect(client, "POST", gw.url + "/generate/stream",
                          json_body={"input": {"workflow_json": two_slow(3, 0.1)}})
    assert not [e for e in plain.events if e.event == "preview"]


async def test_late_follower_gets_the_latest_preview_only(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": two_slow(5, 6.0),
                                                                   "previews": True}})).json()
    async with client.stream("GET", f"{gw.url}/result/{job['id']}/stream") as first:
        async for event in read_events(first):
            if event.event == "preview" and event.data["step"] == 5:
                break  # node 2 is done; node 3 runs for seconds without a preview
    late = await collect(client, "GET", f"{gw.url}/result/{job['id']}/stream")
    previews = [e.data for e in late.events if e.event == "preview"]
    assert [(p["node"], p["step"], p["n"]) for p in previews[:1]] == [("2", 5, 5)], previews
    assert late.events[-1].data["result"]["status"] == "completed"


async def test_a_client_that_stops_reading_never_slows_the_job(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    body = {"input": {"workflow_json": two_slow(40, 0.1), "previews": True}}
    async with client.stream("POST", gw.url + "/generate/stream", json=body) as resp:
        async for event in read_events(resp):
            if event.event == "preview":
                job_id = event.data["request_id"]
                break
        # This client reads nothing more; the job still runs to its end.
        assert await until(lambda: _ended(client, gw, job_id), "the job ended while its client did not read", 60)
    assert fake.stats()["previews_sent"] >= 40


async def _ended(client: httpx.AsyncClient, gw: Gateway, job_id: str) -> bool:
    return (await client.get(f"{gw.url}/result/{job_id}")).json()["status"] == "completed"


async def test_cancel_on_disconnect_sync_and_stream(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    wf = two_slow(2, 30.0)
    ids = []
    for flag in (True, False):
        request_id = str(__import__("uuid").uuid4())
        ids.append(request_id)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(gw.url + "/generate/sync", timeout=httpx.Timeout(60, read=1.5), json={
                "input": {"workflow_json": wf, "request_id": request_id, "cancel_on_disconnect": flag}})
    assert await until(lambda: _is(client, gw, ids[0], "cancelled"), "the abandoned sync job is cancelled")
    assert (await client.get(f"{gw.url}/result/{ids[1]}")).json()["status"] in ("queued", "preprocessing", "generating")
    await client.post(f"{gw.url}/result/{ids[1]}/cancel")  # by default it kept running
    async with client.stream("POST", gw.url + "/generate/stream", json={
            "input": {"workflow_json": wf, "cancel_on_disconnect": True}}) as resp:
        async for event in read_events(resp):
            job_id = event.data["request_id"]
            break
    assert await until(lambda: _is(client, gw, job_id, "cancelled"), "the abandoned stream's job is cancelled")


async def _is(client: httpx.AsyncClient, gw: Gateway, job_id: str, status: str) -> bool:
    return (await client.get(f"{gw.url}/result/{job_id}")).json()["status"] == status


async def test_finished_job_says_every_node_done(fake: Fake, gw: Gateway, client: httpx.AsyncClient):
    fake.control(cache=True)
    for _ in range(2):  # the second run: EmptyImage comes from the cache (execution_cached)
        stream = await collect(client, "POST", gw.url + "/generate/stream",
                               json_body={"input": {"workflow_json": empty_save(prefix="pr")}})
        result = stream.events[-1].data["result"]
        assert result["status"] == "completed", result
        assert result["progress"]["nodes_done"] == result["progress"]["nodes_total"] == 2, result["progress"]
        done = [e.data["progress"]["nodes_done"] for e in stream.events if e.event == "progress"]
        assert done == sorted(done) and done[-1] == 2, done
    # The cached node counted as done as soon as ComfyUI said so, before SaveImage ran.
    saving = [e.data["progress"] for e in stream.events if e.event == "progress" and e.data["progress"]["node"] == "2"]
    assert saving and saving[0]["nodes_done"] == 1, saving


# -- event webhooks ----------------------------------------------------------------------------
@pytest.fixture
def hooked(fake: Fake, gateway_factory) -> Gateway:
    return gateway_factory(fake.url, WEBHOOK_SECRET=WEBHOOK_SECRET, ASSET_ALLOWED_NETWORKS="127.0.0.0/8",
                           WEBHOOK_BACKOFF="0.05")


async def test_event_webhooks_in_order_then_the_final_one(hooked: Gateway, receiver, client: httpx.AsyncClient):
    url = receiver.script("events-fast")
    body = {"input": {"workflow_json": two_slow(4, 0.2), "webhook": {"url": url, "events": ["status", "progress"],
                                                                     "extra_params": {"order": 7}}}}
    r = await client.post(hooked.url + "/generate/sync", json=body)
    assert r.json()["status"] == "completed"
    stored = (await collect(client, "GET", f"{hooked.url}/result/{r.json()['id']}/stream")).events
    deliveries = await asyncio.wait_for(_final_seen(receiver, "events-fast"), 30)
    assert all(d.verified for d in deliveries)
    *events, final = [d.json for d in deliveries]
    assert final["status"] == "completed" and "type" not in final and final["extra_params"] == {"order": 7}
    assert {e["type"] for e in events} == {"job.status", "job.progress"}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e["id"] == final["id"] and e["extra_params"] == {"order": 7} for e in events)
    assert len(events) <= len(stored) - 1


async def test_event_webhooks_dropped_for_a_slow_receiver_final_kept(hooked: Gateway, receiver,
                                                                    client: httpx.AsyncClient):
    url, release = receiver.hold("events-slow")
    body = {"input": {"workflow_json": two_slow(20, 0.1), "webhook": {"url": url, "events": ["progress"]}}}
    r = await client.post(hooked.url + "/generate/sync", json=body)
    assert r.json()["status"] == "completed"  # the held receiver did not hold the job up
    job_id = r.json()["id"]
    stored = (await collect(client, "GET", f"{hooked.url}/result/{job_id}/stream")).events
    progress_events = [e for e in stored if e.event == "progress"]
    assert len(progress_events) > 20
    # The whole job long, one event webhook was in flight (held by the receiver); the others
    # were dropped, not queued, and the final one waits for the one in flight.
    assert receiver.arrived["events-slow"] == 1
    release.set()
    deliveries = await asyncio.wait_for(_final_seen(receiver, "events-slow"), 30)
    assert [d.json.get("type") for d in deliveries] == ["job.progress", None]
    final = deliveries[-1].json
    assert final["status"] == "completed" and final["id"] == job_id and deliveries[-1].verified


async def _final_seen(receiver, path: str):
    n = 1
    while True:
        deliveries = await receiver.wait_for(path, n)
        if "type" not in deliveries[-1].json:
            return deliveries
        n = len(deliveries) + 1


async def test_webhook_events_must_be_known(gw: Gateway, client: httpx.AsyncClient):
    r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save(), "webhook": {
        "url": "https://example.com/h", "events": ["preview"]}}})
    assert r.status_code == 422 and "events" in r.text


async def test_previews_reach_readers_in_every_gateway_process(fake: Fake, tmp_path, client: httpx.AsyncClient):
    # Two processes on one Redis: the job runs in one of them; readers of both get its previews.
    from .support.cluster import Cluster

    cluster = Cluster(tmp_path)
    try:
        a = cluster.start(fake.url)
        b = cluster.start(fake.url)
        job = (await client.post(a.url + "/generate", json={"input": {"workflow_json": two_slow(8, 0.5),
                                                                      "previews": True}})).json()
        streams = await asyncio.gather(*(collect(client, "GET", f"{n.url}/result/{job['id']}/stream") for n in (a, b)))
        for stream in streams:
            assert stream.events[-1].data["result"]["status"] == "completed"
            previews = [e.data for e in stream.events if e.event == "preview"]
            assert previews and all(p["request_id"] == job["id"] for p in previews)
            assert [p["n"] for p in previews] == sorted({p["n"] for p in previews})
    finally:
        cluster.stop()


def test_previews_reach_a_v2_client(fake: Fake, gw: Gateway, monkeypatch: pytest.MonkeyPatch):
    """A v2 job asking for previews (gateway option) shows them to the official SDK as its
    Preview events, before the job's outputs and terminal status."""
    from comfy_low.transport import ComfyLow
    from comfy_sdk import Comfy, OutputReady, StatusChange
    from comfy_sdk import Preview as SdkPreview

    with ComfyLow(gw.url) as low:
        r = low.raw_request("POST", "/jobs", json={"workflow": two_slow(5, 0.3), "gateway": {"previews": True}})
        assert r.status_code == 201, r.text
        plain = low.raw_request("POST", "/jobs", json={"workflow": two_slow(3, 0.1)})
    monkeypatch.setenv("COMFY_BASE_URL", gw.url)
    monkeypatch.delenv("COMFY_API_KEY", raising=False)
    with Comfy() as comfy:
        events = list(comfy.jobs.get(r.json()["id"]).events())
        unasked = list(comfy.jobs.get(plain.json()["id"]).events())
    shown = [e for e in events if isinstance(e, SdkPreview)]
    assert shown, events
    for p in shown:
        assert p.node_id in ("2", "3") and p.content_type == "image/jpeg"
        assert p.to_pil().format == "JPEG"  # the image ComfyUI sent, decoded by the SDK
    last_preview = max(i for i, e in enumerate(events) if isinstance(e, SdkPreview))
    assert last_preview < min(i for i, e in enumerate(events) if isinstance(e, OutputReady))
    assert [e.status for e in events if isinstance(e, StatusChange)][-1] == "succeeded"
    assert not [e for e in unasked if isinstance(e, SdkPreview)]
    assert [e.status for e in unasked if isinstance(e, StatusChange)][-1] == "succeeded"
