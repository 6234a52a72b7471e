"""The typed client, blocking and asyncio, against a real gateway process and the fake ComfyUI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from comfy_gateway.client import (
    AsyncClient,
    Client,
    Conflict,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    NotSupported,
    Unauthorized,
)

from .conftest import Fake, Gateway, empty_save
from .support.procs import free_port
from .test_cli import slow


@pytest.fixture(scope="module")
def shared_fake(module_fake_factory) -> Fake:
    return module_fake_factory()


@pytest.fixture
def fake(shared_fake: Fake) -> Fake:
    """One fake for the module, reset to a clean state for each test."""
    return shared_fake.reset()


@pytest.fixture(scope="module")
def shared_gw(shared_fake: Fake, module_gateway_factory) -> Gateway:
    return module_gateway_factory(shared_fake.url, GENERATION_WORKERS="1")


@pytest.fixture
def gw(fake: Fake, shared_gw: Gateway) -> Gateway:
    """The module's gateway, in front of the freshly reset fake."""
    return shared_gw


def test_sync_client_runs_streams_lists_and_downloads(gw: Gateway, tmp_path: Path):
    with Client(gw.url) as client:
        done = client.sync(empty_save(20, 10, prefix="s"), wait=60)
        assert done.ok and done.done and done.output[0].filename == "s_00001_.png"
        assert done.durations.total is not None and done.output[0].content_type == "image/png"

        events = list(client.stream(slow(0.2, 3, prefix="st")))
        assert events[0].event == "status" and events[-1].event == "final_result"
        steps = [(e.progress.node, e.progress.value) for e in events if e.event == "progress" and e.progress.node == "2"]
        assert (("2", 3.0) in steps) and steps == sorted(steps)
        final = events[-1].result
        assert final is not None and final.ok and final.id == events[0].request_id

        queued = client.submit(empty_save(prefix="q"))  # answered once its inputs are checked
        assert not queued.done and queued.status in ("queued", "preprocessing", "generating")
        assert client.wait(queued.id).ok
        assert [j.id for j in client.jobs(limit=3)] == [queued.id, final.id, done.id]

        (path,) = client.download_all(final, tmp_path / "dl")
        assert path == tmp_path / "dl" / "st_00001_.png"
        assert path.read_bytes() == Path(final.output[0].local_path).read_bytes()
        exact = client.download(final.output[0].url, path=tmp_path / "exact.png")
        assert exact.read_bytes() == path.read_bytes() and not list(tmp_path.glob("**/*.part"))

        info = client.queue_info()
        assert info.queues["generation"].workers == 1 and info.queues["generation"].measured_jobs >= 3
        assert info.backends[0].connected
        health = client.health()
        assert health.status == "ok" and health.backends[0].reachable


def test_sync_client_errors_are_typed_with_the_gateways_words(fake: Fake, gw: Gateway):
    with Client(gw.url) as client:
        with pytest.raises(NotFound) as nf:
            client.result("nope")
        assert nf.value.status_code == 404 and "no job with id 'nope'" in nf.value.detail
        with pytest.raises(InvalidRequest) as bad:
            client.submit({})
        assert bad.value.status_code == 422 and "'workflow_json' has no nodes" in bad.value.detail
        with pytest.raises(InvalidRequest) as unknown:  # this gateway serves no modifiers
            client.submit(modifier="Text2Image", modifications={"prompt": "x"})
        assert unknown.value.status_code == 400 and "unknown modifier 'Text2Image'" in unknown.value.detail
        with pytest.raises(InvalidRequest):
            next(iter(client.stream(modifier="Text2Image")))
        with pytest.raises(NotSupported) as ns:  # a webhook, with no WEBHOOK_SECRET to sign it
            client.submit(empty_save(), webhook={"url": "https://example.com/hook"})
        assert "WEBHOOK_SECRET" in ns.value.detail

        rejected = empty_save()
        del rejected["2"]["inputs"]["images"]
        failed = client.sync(rejected)  # a failed job comes back as a result, not an exception
        assert failed.status == "failed" and failed.error.kind == "rejected"
        assert failed.error.node_errors["2"]["errors"][0]["message"] == "Required input is missing"

        fake.control(hang=True)
        held = client.submit(empty_save(prefix="held"))
        assert client.cancel(held.id).status == "cancelled"
        with pytest.raises(Conflict) as again:
            client.cancel(held.id)
        assert again.value.job_status == "cancelled"
        fake.control(hang=False)

    with pytest.raises(GatewayUnreachable) as gone:
        Client(f"http://127.0.0.1:{free_port()}").health()
    assert gone.value.status_code is None and "cannot reach the gateway" in gone.value.detail


def test_api_key_from_the_argument_or_the_environment(fake: Fake, gateway_factory, monkeypatch):
    gw = gateway_factory(fake.url, API_KEYS="k1,k2")
    with pytest.raises(Unauthorized) as no:
        Client(gw.url).jobs()
    assert "missing or wrong API key" in no.value.detail
    assert Client(gw.url, api_key="k2").sync(empty_save(prefix="k")).ok
    monkeypatch.setenv("COMFY_GATEWAY_URL", gw.url)
    monkeypatch.setenv("COMFY_GATEWAY_API_KEY", "k1")
    with Client() as client:
        assert client.url == gw.url and len(client.jobs()) == 1


async def test_async_client_same_calls(fake: Fake, gw: Gateway, tmp_path: Path):
    async with AsyncClient(gw.url) as client:
        fake.control(hang=True)  # the first job holds the one generation worker until let go
        ids = [(await client.submit(slow(0.3, 2, prefix=f"a{i}"))).id for i in range(3)]
        # The last one waits behind the others: its stream says where.
        events = []

        async def follow_last() -> None:
            async for e in client.follow(ids[-1]):
                events.append(e)
                if e.event == "queue" and e.queue_position.position is not None:
                    fake.control(hang=False)

        await asyncio.wait_for(follow_last(), 60)
        assert any(e.event == "queue" and e.queue_position.position is not None for e in events)
        assert events[-1].result.ok
        results = await asyncio.gather(*(client.wait(i) for i in ids))
        assert [r.status for r in results] == ["completed"] * 3
        resumed = [e async for e in client.follow(ids[0], last_event_id="2")]
        assert resumed[0].id == "3" and resumed[-1].event == "final_result"

        streamed = [e async for e in client.stream(empty_save(prefix="as"))]
        paths = await client.download_all(streamed[-1].result, tmp_path)
        assert [p.name for p in paths] == ["as_00001_.png"]
        assert (await client.sync(empty_save(prefix="as2"))).ok
        assert (await client.health()).status == "ok"
        assert (await client.queue_info()).queues["postprocess"].workers == 4
        assert (await client.jobs(limit=1))[0].output[0].filename == "as2_00001_.png"

        fake.control(hang=True)
        held = await client.submit(empty_save(prefix="held"))
        assert (await client.cancel(held.id)).status == "cancelled"
        with pytest.raises(Conflict):
            await client.cancel(held.id)
        fake.control(hang=False)
        with pytest.raises(NotFound):
            await client.result("nope")
        with pytest.raises(InvalidRequest):
            [e async for e in client.stream(modifier="Text2Image")]


def test_jobs_limit_is_checked(gw: Gateway):
    for bad in ("0", "501", "many"):
        r = httpx.get(gw.url + "/jobs", params={"limit": bad})
        assert r.status_code == 422 and r.json()["detail"].startswith("invalid request: query.limit:"), r.text
    for good in ("1", "500"):
        r = httpx.get(gw.url + "/jobs", params={"limit": good})
        assert r.status_code == 200 and len(r.json()["jobs"]) <= int(good) and "next_cursor" in r.json()
