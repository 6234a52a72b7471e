"""A real upscale model named by URL, run by the real CPU ComfyUI: downloaded by the gateway,
placed in the models folder ComfyUI reads (SHARED_MODELS_DIR), and the output upscaled."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import httpx
from PIL import Image

from ..conftest import Gateway
from ..support.models import make_srvgg
from .conftest import upscale_workflow


async def _sync(client: httpx.AsyncClient, gw: Gateway, workflow: dict) -> dict:
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": workflow}}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


async def _image_size(client: httpx.AsyncClient, result: dict) -> tuple[int, int]:
    r = await client.get(result["output"][0]["url"])
    assert r.status_code == 200
    return Image.open(io.BytesIO(r.content)).size


async def test_upscaler_by_url_runs_on_comfyui_and_is_fetched_once(
        shared_gateway: Gateway, model_comfyui, model_files, model_url, srvgg, client: httpx.AsyncClient):
    _, models_dir = model_comfyui
    url = model_url(srvgg, "tiny-x2.safetensors")
    path = urlsplit(url).path

    first = await _sync(client, shared_gateway, upscale_workflow(url, 16, 12, color=0x336699))
    assert first["status"] == "completed"
    assert await _image_size(client, first) == (32, 24)  # the model's x2, not the 16x12 input
    placed = list((models_dir / "upscale_models").iterdir())
    assert [p.read_bytes() == srvgg for p in placed] == [True]
    name = placed[0].name
    assert name.endswith("-tiny-x2.safetensors") and not name.startswith(".")

    info = (await client.get(shared_gateway.url + "/queue-info")).json()
    assert info["backends"][0]["models"] == [name]
    transfers = info["models"]["transfers"]
    # The download's progress is in the job's events.
    events = (await client.get(f"{shared_gateway.url}/result/{first['id']}/stream")).text
    assert f"downloading model {url}: {len(srvgg)} of {len(srvgg)} bytes (100%)" in events

    # The same model again (another image, so ComfyUI's cache does not answer): neither
    # downloaded again (the file server saw one request) nor placed again.
    second = await _sync(client, shared_gateway, upscale_workflow(url, 10, 6, color=0x112233, prefix="up2"))
    assert second["status"] == "completed"
    assert await _image_size(client, second) == (20, 12)
    assert model_files.hits[path] == 1
    info = (await client.get(shared_gateway.url + "/queue-info")).json()
    assert info["models"]["transfers"] == transfers
    assert info["models"]["downloads"] >= 1 and info["models"]["files"] >= 1


async def test_an_uploaded_model_by_asset_reference(shared_gateway: Gateway, client: httpx.AsyncClient,
                                                    model_comfyui, tmp_path):
    model = make_srvgg(tmp_path / "x4.safetensors", scale=4)  # its own weights: a new file
    r = await client.post(shared_gateway.url + "/assets", files={"file": ("x4.safetensors", model)})
    assert r.status_code == 201, r.text
    ref = r.json()["ref"]
    result = await _sync(client, shared_gateway, upscale_workflow(ref, 6, 5, prefix="asset"))
    assert await _image_size(client, result) == (24, 20)
    _, models_dir = model_comfyui
    assert [p.read_bytes() for p in (models_dir / "upscale_models").glob(f"{ref[8:20]}-*")] == [model]
