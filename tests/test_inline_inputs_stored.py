"""An input sent inline (a data: URI) is stored as an asset once checked: the job names it by
its asset from then on, so its record stays small, and the real ComfyUI still gets the bytes."""

from __future__ import annotations

import base64
import hashlib
import io

import httpx
import pytest
import redis.asyncio as aioredis
from PIL import Image

from comfy_gateway.jobs.redis_keys import RedisKeys

from .conftest import png_bytes
from .support.redis import REDIS_URL, new_prefix, wipe_prefix


def _invert(image: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inline"}},
    }


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_inline_input_is_stored_as_an_asset_and_still_runs(store, comfyui, gateway_factory, client, tmp_path):
    assets = tmp_path / "assets"
    prefix = new_prefix()
    env = {"ASSETS_DIR": str(assets)}
    if store == "redis":
        env.update(API_CACHE="redis", REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix)
    gw = gateway_factory(comfyui, **env)
    png = png_bytes(40, 30, (10, 100, 200))
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    try:
        r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": _invert(uri)}})
        result = r.json()
        assert result["status"] == "completed", result
        img = Image.open(io.BytesIO((await client.get(result["output"][0]["url"])).content)).convert("RGB")
        assert all(abs(a - b) <= 1 for a, b in zip(img.getpixel((0, 0)), (245, 155, 55)))
        sha = hashlib.sha256(png).hexdigest()
        assert (assets / sha).read_bytes() == png  # kept as an asset, as POST /assets would
        # The same bytes by their asset name: what the job now names instead of the data: URI.
        r = await client.post(gw.url + "/generate/sync",
                              json={"input": {"workflow_json": _invert(f"asset://{sha}")}})
        assert r.json()["status"] == "completed", r.text
        if store == "redis":  # the record as stored: no trace of the inline bytes
            red = aioredis.from_url(REDIS_URL, decode_responses=True)
            try:
                record = await red.hgetall(RedisKeys(prefix).job(result["id"]))
            finally:
                await red.aclose()
            assert record["core"] and "data:" not in record["core"] and "data:" not in record["request"]
            assert f"asset://{sha}" in record["core"] and f"asset://{sha}" in record["request"]
    finally:
        if store == "redis":
            await wipe_prefix(prefix)
