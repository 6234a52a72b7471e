"""The official Comfy SDK against two gateway processes sharing one Redis (and one OUTPUT_DIR and
ASSETS_DIR, as a deployment on a shared volume does) in front of the real CPU ComfyUI: a job
submitted to one process is followed, read, listed and cancelled on the other."""

from __future__ import annotations

import io
import uuid

import pytest
from comfy_sdk import Comfy, IdempotencyKeyReuse, OutputReady, StatusChange
from PIL import Image

from .conftest import empty_save, png_bytes
from .support.cluster import Cluster
from .test_comfy_sdk import invert, slow_blur

KEY = "redis-sdk-key"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def client_for(url: str, monkeypatch: pytest.MonkeyPatch) -> Comfy:
    monkeypatch.setenv("COMFY_BASE_URL", url)
    monkeypatch.setenv("COMFY_API_KEY", KEY)
    return Comfy()


def test_submit_to_one_process_follow_on_the_other(comfyui: str, cluster: Cluster, tmp_path,
                                                    monkeypatch: pytest.MonkeyPatch):
    shared = {"api_keys": KEY, "assets_dir": str(tmp_path / "assets")}
    a, b = cluster.start(comfyui, **shared), cluster.start(comfyui, **shared)
    with client_for(a.url, monkeypatch) as on_a, client_for(b.url, monkeypatch) as on_b:
        data = png_bytes(12, 6, (0, 100, 200))
        asset = on_a.assets.from_bytes(data, filename="blue.png", content_type="image/png")
        key = str(uuid.uuid4())
        job = on_a.submit(on_a.workflows.from_json(invert(asset, prefix="redis")), idempotency_key=key)

        followed = on_b.jobs.get(job.id)
        events = list(followed.events())
        assert [e.status for e in events if isinstance(e, StatusChange)][-1] == "succeeded"
        (ready,) = [e.output for e in events if isinstance(e, OutputReady)]
        assert Image.open(io.BytesIO(ready.to_bytes())).convert("RGB").size == (12, 6)
        assert on_a.jobs.get(job.id).outputs[0].to_bytes() == ready.to_bytes()  # either process serves it
        with pytest.raises(IdempotencyKeyReuse):  # the key is spent for every process
            on_b.submit(on_b.workflows.from_json(invert(asset, prefix="redis")), idempotency_key=key)
        assert job.id in [s.id for s in on_b.list_jobs(limit=10)]
        assert on_b.assets.get(asset.id).hash == asset.hash

        # Cancel on the other process than the one running it.
        slow = on_a.submit(on_a.workflows.from_json(slow_blur()))
        watched = on_b.jobs.get(slow.id)
        for event in watched.events():
            if isinstance(event, StatusChange) and event.status == "running":
                break
        watched.cancel()
        assert slow.wait(timeout=120).status == "canceled"
        assert on_a.run(on_a.workflows.from_json(empty_save(prefix="after"))).status == "succeeded"
