"""Models delivered through ComfyUI's assets API, to the fake answering as ComfyUI 0.33 started
with --enable-assets (no ComfyUI on PyPI has that API; see routes_assets.py): uploaded once with
tags models + model_type:<folder>, found by its BLAKE3 hash afterwards, never sent twice, not
even by another gateway process."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from blake3 import blake3
from PIL import Image

from ..conftest import Gateway
from ..support.procs import Proc, free_port, wait_http
from ..support.transcripts import transcript
from .conftest import upscale_workflow


@pytest.fixture
def assets_fakes(tmp_path: Path):
    """Start fakes answering as ComfyUI 0.33 with --enable-assets: (url, base dir) each."""
    procs: list[Proc] = []

    def start() -> tuple[str, Path]:
        port, base = free_port(), tmp_path / f"fake{len(procs)}"
        procs.append(Proc([sys.executable, "-m", "comfy_gateway.testing.fake_comfyui", "--host", "127.0.0.1",
                           "--port", str(port), "--base-dir", str(base), "--enable-assets"], dict(os.environ),
                          tmp_path / f"fake{len(procs)}.log"))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/system_stats", 30, procs[-1].proc)
        return url, base

    yield start
    for proc in procs:
        proc.stop()


def uploads(fake_url: str) -> int:
    return httpx.get(fake_url + "/fake/stats").json().get("asset_uploads", 0)


async def _run(client: httpx.AsyncClient, gw: Gateway, workflow: dict) -> tuple[int, int]:
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": workflow}})
    assert r.status_code == 200, r.text
    image = await client.get(r.json()["output"][0]["url"])
    return Image.open(io.BytesIO(image.content)).size


async def test_models_go_up_once_through_the_assets_api(
        assets_fakes, gateway_factory: Callable[..., Gateway], tmp_path: Path, client: httpx.AsyncClient,
        model_files, model_url, srvgg: bytes):
    fake_url, fake_dir = assets_fakes()
    # The fake says what a 0.33.0 says, assets switched on.
    recorded = transcript("01_misc_get.json", "v0.33.0")["/features"][1]
    assert httpx.get(fake_url + "/features").json() == {**recorded, "assets": True}

    gw = gateway_factory(fake_url, asset_allowed_networks="127.0.0.1/32", model_cache_dir=str(tmp_path / "cache"))
    url = model_url(srvgg, "tiny-x2.safetensors")
    assert await _run(client, gw, upscale_workflow(url, 16, 12)) == (32, 24)

    stored = fake_dir / "models" / "upscale_models" / f"{blake3(srvgg).hexdigest()}.safetensors"
    assert stored.read_bytes() == srvgg  # where ComfyUI's assets API puts it, named by BLAKE3
    info = (await client.get(gw.url + "/queue-info")).json()
    assert info["backends"][0]["models"] == [stored.name]
    assert uploads(fake_url) == 1

    assert await _run(client, gw, upscale_workflow(url, 10, 6, color=7, prefix="again")) == (20, 12)
    assert model_files.hits[urlsplit(url).path] == 1

    # Another gateway process knows nothing of it, downloads it, asks ComfyUI by hash and
    # sends nothing: the file went up once.
    other = gateway_factory(fake_url, asset_allowed_networks="127.0.0.1/32", model_cache_dir=str(tmp_path / "c2"))
    assert await _run(client, other, upscale_workflow(url, 8, 8, color=9, prefix="other")) == (16, 16)
    assert uploads(fake_url) == 1
    assert list(stored.parent.iterdir()) == [stored]


async def test_jobs_go_where_their_models_already_are(
        assets_fakes, gateway_factory: Callable[..., Gateway], tmp_path: Path, client: httpx.AsyncClient,
        model_url, srvgg: bytes):
    (a, _), (b, _) = assets_fakes(), assets_fakes()
    gw = gateway_factory(f"{a},{b}", asset_allowed_networks="127.0.0.1/32", model_cache_dir=str(tmp_path / "cache"))
    url = model_url(srvgg, "tiny-x2.safetensors")
    ran_on = []
    for i in range(4):  # one at a time: both backends idle each time, equally loaded
        r = await client.post(gw.url + "/generate/sync",
                              json={"input": {"workflow_json": upscale_workflow(url, 8, 8, color=i, prefix=f"p{i}")}})
        assert r.status_code == 200, r.text
        ran_on.append(r.json()["backend"])
    # Equal load alone alternates backends; holding the model keeps every job on the first.
    assert len(set(ran_on)) == 1, ran_on
    assert sorted([uploads(a), uploads(b)]) == [0, 1]
    info = (await client.get(gw.url + "/queue-info")).json()
    held = {x["name"]: x["models"] for x in info["backends"]}
    assert held[ran_on[0]] == [f"{blake3(srvgg).hexdigest()}.safetensors"]
    assert [m for name, m in held.items() if name != ran_on[0]] == [[]]

    # A job without models still alternates (least loaded, then the one picked longest ago).
    plain = []
    for i in range(2):
        r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"plain{i}"}}}}})
        plain.append(r.json()["backend"])
    assert len(set(plain)) == 2, plain
