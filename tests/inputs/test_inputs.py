"""Input assets end to end against the real ComfyUI: URLs in raw workflows, data: URIs, uploaded
assets, the content cache and shared downloads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import httpx
from PIL import Image

from ..conftest import Gateway, png_bytes
from ..support.files_server import FilesServer
from .test_modifiers import close, image_of


def invert(image: str, prefix: str = "in") -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}


def jpeg_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


async def run(client: httpx.AsyncClient, gw: Gateway, workflow: dict) -> httpx.Response:
    return await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": workflow}})


async def test_url_in_a_raw_workflow(asset_gateway: Gateway, client: httpx.AsyncClient, files: FilesServer, served):
    url = served(png_bytes(20, 10, (0, 0, 0)))
    r = await run(client, asset_gateway, invert(url))
    assert r.status_code == 200, r.text
    img = await image_of(client, r.json())
    assert img.size == (20, 10) and img.getpixel((3, 3)) == (255, 255, 255)
    # Twice more: cached by URL and by content, so the server sees one request in all.
    for _ in range(2):
        assert (await run(client, asset_gateway, invert(url))).status_code == 200
    assert files.hits[urlparse(url).path] == 1


async def comfyui_input_dir(client: httpx.AsyncClient, comfyui: str) -> Path:
    argv = (await client.get(comfyui + "/system_stats")).json()["system"]["argv"]
    return Path(argv[argv.index("--base-directory") + 1]) / "input"


async def test_type_comes_from_content_not_from_the_name(asset_gateway: Gateway, client: httpx.AsyncClient,
                                                         comfyui: str, served):
    # A JPEG behind a .dat URL declared as octet-stream: libmagic says what it is, and the file
    # goes up to ComfyUI named by its content with the extension of its real type.
    jpeg = jpeg_bytes(16, 16, (250, 250, 250))
    url = served(jpeg, content_type="application/octet-stream", suffix=".dat")
    r = await run(client, asset_gateway, invert(url))
    assert r.status_code == 200, r.text
    assert close((await image_of(client, r.json())).getpixel((8, 8)), (5, 5, 5), 3)
    name = hashlib.sha256(jpeg).hexdigest() + ".jpg"
    view = await client.get(comfyui + "/view", params={"filename": name, "type": "input"})
    assert view.status_code == 200 and view.content == jpeg


async def test_an_input_the_backend_lost_is_uploaded_again(asset_gateway: Gateway, client: httpx.AsyncClient,
                                                           comfyui: str):
    png = png_bytes(9, 9, (3, 2, 1))
    data = "data:image/png;base64," + base64.b64encode(png).decode()
    uploaded = lambda info: info["backends"][0]["inputs_uploaded"]  # noqa: E731
    before = uploaded((await client.get(asset_gateway.url + "/queue-info")).json())
    assert (await run(client, asset_gateway, invert(data))).status_code == 200
    assert (await run(client, asset_gateway, invert(data))).status_code == 200  # the backend has it: no upload
    assert uploaded((await client.get(asset_gateway.url + "/queue-info")).json()) == before + 1
    # ComfyUI's input folder emptied behind our back (a fresh container, an operator): ComfyUI
    # refuses the prompt naming the file, the gateway uploads it again and runs it once more.
    (await comfyui_input_dir(client, comfyui) / (hashlib.sha256(png).hexdigest() + ".png")).unlink()
    r = await run(client, asset_gateway, invert(data))
    assert r.status_code == 200, r.text
    assert (await image_of(client, r.json())).getpixel((4, 4)) == (252, 253, 254)
    assert uploaded((await client.get(asset_gateway.url + "/queue-info")).json()) == before + 2


async def test_with_no_cache_inputs_are_fetched_again_for_the_upload(
        comfyui: str, gateway_factory: Callable[..., Gateway], client: httpx.AsyncClient, files: FilesServer, served):
    gw = gateway_factory(comfyui, asset_allowed_networks="127.0.0.1", input_cache_bytes="0")
    url = served(png_bytes(5, 5, (100, 100, 100)))
    r = await run(client, gw, invert(url))
    assert r.status_code == 200, r.text
    # Nothing kept between the check and the upload: fetched twice, the bytes compared by hash.
    assert files.hits[urlparse(url).path] == 2
    assert (await client.get(gw.url + "/queue-info")).json()["inputs"]["bytes"] == 0
    # Other bytes at the second fetch than at the check: the job fails, nothing unchecked goes up.
    changing = files.serve_in_turn("/changing.png", [png_bytes(5, 5, (1, 1, 1)), png_bytes(5, 5, (2, 2, 2))])
    r = await run(client, gw, invert(changing))
    assert r.status_code == 422, r.text
    assert "its content changed between its check and its upload" in r.json()["error"]["message"]


async def test_concurrent_requests_for_one_url_share_one_download(asset_gateway: Gateway, client: httpx.AsyncClient,
                                                                  files: FilesServer, served):
    url = served(png_bytes(12, 12, (0, 255, 0)), delay=0.8)
    before = (await client.get(asset_gateway.url + "/queue-info")).json()["inputs"]["downloads"]
    results = await asyncio.gather(*(run(client, asset_gateway, invert(url, f"c{i}")) for i in range(6)))
    assert [r.status_code for r in results] == [200] * 6, [r.text for r in results]
    assert files.hits[urlparse(url).path] == 1
    info = (await client.get(asset_gateway.url + "/queue-info")).json()
    assert info["inputs"]["downloads"] == before + 1


async def test_data_uri_input(asset_gateway: Gateway, client: httpx.AsyncClient):
    data = "data:image/png;base64," + base64.b64encode(png_bytes(10, 6, (255, 0, 0))).decode()
    r = await run(client, asset_gateway, invert(data))
    assert r.status_code == 200, r.text
    img = await image_of(client, r.json())
    assert img.size == (10, 6) and img.getpixel((0, 0)) == (0, 255, 255)
    # In a modifier's modifications too, and a JPEG declared as PNG is taken for what it is.
    jpeg = "data:image/png;base64," + base64.b64encode(jpeg_bytes(8, 8, (0, 0, 250))).decode()
    r = await client.post(asset_gateway.url + "/generate/sync", json={
        "input": {"modifier": "ImageEdit", "modifications": {"image": jpeg, "effect": "none", "width": 4}}})
    assert r.status_code == 200, r.text
    img = await image_of(client, r.json())
    assert img.size == (4, 4) and close(img.getpixel((2, 2)), (0, 0, 250), 4)


async def test_asset_upload_then_use(asset_gateway: Gateway, client: httpx.AsyncClient):
    png = png_bytes(14, 7, (0, 0, 255))
    r = await client.post(asset_gateway.url + "/assets", files={"file": ("photo.bin", png, "application/octet-stream")})
    assert r.status_code == 201, r.text
    asset = r.json()
    assert asset["ref"] == "asset://" + asset["sha256"]
    assert asset["content_type"] == "image/png" and asset["size_bytes"] == len(png)
    again = await client.post(asset_gateway.url + "/assets", files={"file": ("other.png", png, "image/png")})
    assert again.status_code == 201 and again.json()["ref"] == asset["ref"]  # one copy per content

    r = await run(client, asset_gateway, invert(asset["ref"]))
    assert r.status_code == 200, r.text
    img = await image_of(client, r.json())
    assert img.size == (14, 7) and img.getpixel((1, 1)) == (255, 255, 0)
    r = await client.post(asset_gateway.url + "/generate/sync", json={
        "input": {"modifier": "BlurScale", "modifications": {"image": asset["ref"], "width": 7, "height": 7}}})
    assert r.status_code == 200, r.text
    assert (await image_of(client, r.json())).size == (7, 7)


async def test_bad_asset_uploads(asset_gateway: Gateway, client: httpx.AsyncClient):
    url = asset_gateway.url + "/assets"
    r = await client.post(url, files={"file": ("x.png", b"<html>not an image</html>", "image/png")})
    assert r.status_code == 415 and "text/html" in r.json()["detail"]
    r = await client.post(url, files={"file": ("big.png", b"\0" * 300001, "image/png")})
    assert r.status_code == 413 and "MAX_INPUT_BYTES" in r.json()["detail"]
    r = await client.post(url, content=png_bytes(4, 4, (1, 2, 3)), headers={"content-type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = await client.post(url, files={"other": ("x.png", png_bytes(4, 4, (1, 2, 3)), "image/png")})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]
    # A form posted by another site's page in a visitor's browser (which says so in Origin).
    r = await client.post(url, files={"file": ("x.png", png_bytes(4, 4, (1, 2, 3)), "image/png")},
                          headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["detail"]
    r = await client.post(url, files={"file": ("x.png", png_bytes(4, 4, (1, 2, 3)), "image/png")},
                          headers={"Origin": asset_gateway.url})
    assert r.status_code == 201
    # A reference to nothing, or to something that is no reference.
    for ref, why in (("asset://" + "0" * 64, "no such asset"), ("asset://../../etc/passwd", "not an asset reference")):
        r = await run(client, asset_gateway, invert(ref))
        assert r.status_code == 422, r.text
        assert why in r.json()["error"]["message"] and "node 1 input 'image'" in r.json()["error"]["message"]
