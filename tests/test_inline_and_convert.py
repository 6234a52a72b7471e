"""Base64 outputs in the result, and image outputs converted to webp or jpeg, against a real ComfyUI."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import pytest
from PIL import Image

from .conftest import Gateway, empty_save
from .support.s3server import S3Server
from .test_e2e_real_comfyui import invert_workflow, upload_to_comfyui
from .test_s3_outputs import noise_png, view_bytes


async def run(client: httpx.AsyncClient, gateway: Gateway, **inp) -> dict:
    r = await client.post(gateway.url + "/generate/sync", json={"input": inp})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed", r.json()
    return r.json()


async def test_base64_outputs_are_the_files(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    name = await upload_to_comfyui(client, comfyui, f"b64-{uuid.uuid4().hex[:6]}.png", noise_png(20, 10))
    result = await run(client, gateway, workflow_json=invert_workflow(name), include_previews=True,
                       base64_outputs=True)
    assert len(result["output"]) == 2 and result["warnings"] == []
    for out in result["output"]:
        assert base64.b64decode(out["base64"]) == await view_bytes(client, comfyui, result["id"], out)
    # Without asking, no base64.
    plain = await run(client, gateway, workflow_json=empty_save(4, 4))
    assert plain["output"][0]["base64"] is None


async def test_past_the_cap_the_job_completes_with_urls_and_says_why(comfyui: str, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(comfyui, INLINE_MAX_BYTES="4000")
    name = await upload_to_comfyui(client, comfyui, f"cap-{uuid.uuid4().hex[:6]}.png", noise_png(64, 64))
    result = await run(client, gw, workflow_json=invert_workflow(name), base64_outputs=True)
    out = result["output"][0]
    assert out["size_bytes"] > 4000 and out["base64"] is None
    assert "1 warning(s)" in result["message"]
    (warning,) = result["warnings"]
    assert out["filename"] in warning and "INLINE_MAX_BYTES" in warning
    assert (await client.get(out["url"])).content == await view_bytes(client, comfyui, result["id"], out)


@pytest.mark.parametrize("fmt, pil_format, suffix, content_type", [
    ("webp", "WEBP", ".webp", "image/webp"), ("jpeg", "JPEG", ".jpg", "image/jpeg")])
async def test_images_converted(gateway: Gateway, client: httpx.AsyncClient, fmt, pil_format, suffix, content_type):
    result = await run(client, gateway, workflow_json=empty_save(40, 20, 0x3366CC, "conv"),
                       convert_output={"format": fmt, "quality": 95}, base64_outputs=True)
    out = result["output"][0]
    assert out["filename"].startswith("conv_") and out["filename"].endswith(suffix)
    assert out["content_type"] == content_type
    served = await client.get(out["url"])
    assert served.status_code == 200 and served.headers["content-type"] == content_type
    assert len(served.content) == out["size_bytes"] and base64.b64decode(out["base64"]) == served.content
    img = Image.open(io.BytesIO(served.content))
    assert img.format == pil_format and img.size == (40, 20)
    assert all(abs(a - b) <= 4 for a, b in zip(img.convert("RGB").getpixel((20, 10)), (0x33, 0x66, 0xCC)))



@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
async def test_conversion_quality_is_the_one_asked_for(gateway: Gateway, comfyui: str, client: httpx.AsyncClient,
                                                      fmt: str):
    # Noise, unlike a flat colour, compresses worse at every step of quality: each quality
    # asked for gives a file of its own size, the lower the smaller.
    name = await upload_to_comfyui(client, comfyui, f"q-{uuid.uuid4().hex[:6]}.png", noise_png(64, 64))
    sizes = []
    for quality in (95, 50, 5):
        result = await run(client, gateway, workflow_json=invert_workflow(name),
                           convert_output={"format": fmt, "quality": quality})
        sizes.append(result["output"][0]["size_bytes"])
    assert sizes[0] > sizes[1] > sizes[2], sizes


async def test_converted_outputs_go_to_s3(s3_gateway: Gateway, s3_open: S3Server, client: httpx.AsyncClient):
    result = await run(client, s3_gateway, workflow_json=empty_save(16, 16, 0xFFFFFF, "cs3"),
                       convert_output={"format": "jpeg"})
    out = result["output"][0]
    assert out["s3_key"].endswith(".jpg") and out["content_type"] == "image/jpeg"
    data = s3_open.get("env-bucket", out["s3_key"])
    assert len(data) == out["size_bytes"] and Image.open(io.BytesIO(data)).format == "JPEG"
    assert s3_open.client().head_object(Bucket="env-bucket", Key=out["s3_key"])["ContentType"] == "image/jpeg"
