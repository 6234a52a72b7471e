"""README promises about input fetches that no other test held the gateway to: proxy
variables ignored, no transparent decompression, at most 64 distinct inputs and 8 fetched at
once, and assets kept for ASSET_TTL (uploading them again keeps them longer)."""

from __future__ import annotations

import gzip
import itertools
import uuid

import httpx

from ..conftest import Gateway, png_bytes
from ..support.files_server import FilesServer
from ..support.wait import until
from .test_inputs import invert

_n = itertools.count()


def many_inputs(urls: list[str]) -> dict:
    """One LoadImage per URL; the first goes to SaveImage (the gateway fetches them all)."""
    wf = {str(10 + i): {"class_type": "LoadImage", "inputs": {"image": url}} for i, url in enumerate(urls)}
    wf["1"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "many"}}
    return wf


async def test_proxy_variables_are_ignored(comfyui: str, gateway_factory, files: FilesServer,
                                           forbidden: FilesServer, client: httpx.AsyncClient):
    # Every proxy variable names 127.0.0.2, which counts what reaches it: nothing may.
    proxy = forbidden.url
    gw = gateway_factory(comfyui, ASSET_ALLOWED_NETWORKS="127.0.0.1/32", HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
                         ALL_PROXY=proxy, http_proxy=proxy, https_proxy=proxy, NO_PROXY="", no_proxy="")
    before = forbidden.total_hits
    url = files.serve(f"/proxy/{next(_n)}.png", png_bytes(6, 6, (1, 2, 3)))
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": invert(url)}})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert files.hits[f"/proxy/{next(_n) - 1}.png"] == 1 and forbidden.total_hits == before


async def test_no_transparent_decompression(asset_gateway: Gateway, files: FilesServer, client: httpx.AsyncClient):
    # A PNG sent gzip-compressed (Content-Encoding: gzip) is gzip bytes to the gateway: had it
    # been decompressed on the way in, the limits would count other bytes than those received.
    body = gzip.compress(png_bytes(8, 8, (9, 9, 9)))
    url = files.serve(f"/gz/{next(_n)}.png", body, "image/png", headers={"Content-Encoding": "gzip"})
    r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": invert(url)}})
    assert r.status_code == 415, r.text
    assert r.json()["error"]["type"] == "input_type" and "gzip" in r.json()["error"]["message"]


async def test_at_most_64_inputs_and_8_fetched_at_once(asset_gateway: Gateway, files: FilesServer,
                                                       client: httpx.AsyncClient):
    png = png_bytes(4, 4, (200, 0, 0))
    too_many = [f"data:image/png;x={i};base64," + __import__("base64").b64encode(png).decode() for i in range(65)]
    r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": many_inputs(too_many)}})
    assert r.status_code == 400, r.text
    assert "65 inputs" in r.json()["error"]["message"] and "at most 64" in r.json()["error"]["message"]
    # 16 slow downloads of one job: never more than 8 at a time.
    tag = uuid.uuid4().hex[:8]
    urls = [files.serve(f"/par/{tag}/{i}.png", png_bytes(4, 4, (i, 0, 0)), delay=0.5) for i in range(16)]
    files.max_active = 0
    r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": many_inputs(urls)}})
    assert r.status_code == 200, r.text
    assert all(files.hits[f"/par/{tag}/{i}.png"] == 1 for i in range(16))
    assert files.max_active == 8


async def test_assets_expire_after_asset_ttl_and_a_new_upload_keeps_them(comfyui: str, gateway_factory, tmp_path,
                                                                        client: httpx.AsyncClient):
    assets = tmp_path / "assets"
    gw = gateway_factory(comfyui, ASSET_TTL="3", ASSETS_DIR=str(assets))
    png = png_bytes(5, 5, (0, 128, 0))
    first = (await client.post(gw.url + "/assets", files={"file": ("a.png", png, "image/png")})).json()
    stored = assets / first["sha256"]
    assert stored.read_bytes() == png
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": invert(first["ref"])}})
    assert r.status_code == 200, r.text
    # Past its TTL the stored copy is deleted...
    await until(lambda: not stored.exists(), "the asset is deleted after ASSET_TTL", timeout=60)
    # ...and the same bytes uploaded again are kept anew, under the same reference.
    again = await client.post(gw.url + "/assets", files={"file": ("a.png", png, "image/png")})
    assert again.status_code == 201 and again.json()["ref"] == first["ref"]
    assert again.json()["expires_at"] > first["expires_at"] and stored.read_bytes() == png
