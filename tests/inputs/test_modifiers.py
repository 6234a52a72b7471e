"""Modifiers end to end against the real ComfyUI: the shipped examples, a modifier written the
way the issue shows users write them, a declarative one, and every way a modifier request can
be wrong."""

from __future__ import annotations

import io
import re
import uuid
from urllib.parse import urlparse

import httpx
from PIL import Image

from ..conftest import Gateway, png_bytes
from ..support.files_server import FilesServer

BLUE = (10, 100, 200)


async def image_of(client: httpx.AsyncClient, result: dict) -> Image.Image:
    r = await client.get(result["output"][0]["url"])
    assert r.status_code == 200
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def close(a: tuple, b: tuple, tol: int = 1) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


async def sync(client: httpx.AsyncClient, gw: Gateway, modifier: str, **modifications) -> httpx.Response:
    return await client.post(gw.url + "/generate/sync",
                              json={"input": {"modifier": modifier, "modifications": modifications}})


async def test_image_edit_with_an_image_from_a_local_server(asset_gateway: Gateway, client: httpx.AsyncClient,
                                                            files: FilesServer, served):
    url = served(png_bytes(40, 30, BLUE))
    r = await sync(client, asset_gateway, "ImageEdit", image=url)  # effect defaults to invert
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "completed"
    img = await image_of(client, result)
    assert img.size == (40, 30)
    assert close(img.getpixel((0, 0)), (245, 155, 55)) and close(img.getpixel((39, 29)), (245, 155, 55))

    # Blurred and scaled: the same URL again is not fetched again (cached by content).
    r = await sync(client, asset_gateway, "ImageEdit", image=url, effect="blur", width=20)
    assert r.status_code == 200, r.text
    img = await image_of(client, r.json())
    assert img.size == (20, 15)  # height follows the aspect ratio
    assert close(img.getpixel((10, 7)), BLUE, 2)
    assert files.hits[urlparse(url).path] == 1


async def test_declarative_modifier(asset_gateway: Gateway, client: httpx.AsyncClient, served):
    url = served(png_bytes(64, 64, (200, 30, 30)))
    r = await sync(client, asset_gateway, "BlurScale", image=url, width=32, height=16, prefix="decl")
    assert r.status_code == 200, r.text
    out = r.json()["output"][0]
    assert out["filename"].startswith("decl_")
    img = await image_of(client, r.json())
    assert img.size == (32, 16) and close(img.getpixel((16, 8)), (200, 30, 30), 2)


async def test_declarative_modifications_are_validated(asset_gateway: Gateway, client: httpx.AsyncClient, served):
    url = served(png_bytes(8, 8, BLUE))
    cases = [
        ({"image": url, "width": 99999}, "input.modifications.width", "less than or equal to 4096"),
        ({"image": url, "width": "wide"}, "input.modifications.width", "integer"),
        ({"image": url, "colour": "red"}, "input.modifications.colour", "unknown parameter"),
        ({"image": url, "method": "magic"}, "input.modifications.method", "nearest-exact"),
        ({"width": 10}, "input.modifications.image", "Field required"),
        ({"image": "photo.png"}, "input.modifications.image", "an http(s) URL, a data: URI or an asset://"),
    ]
    for modifications, where, why in cases:
        for path in ("/generate", "/generate/sync", "/generate/stream"):
            r = await client.post(asset_gateway.url + path,
                                  json={"input": {"modifier": "BlurScale", "modifications": modifications}})
            assert r.status_code == 422, (modifications, path, r.text)
            assert where in r.json()["detail"] and why in r.json()["detail"], r.json()["detail"]


async def test_a_modifier_written_as_the_issue_shows_works_unchanged(asset_gateway: Gateway, client: httpx.AsyncClient):
    r = await sync(client, asset_gateway, "IssueStyle", seed=0xFF0000, prompt="issue")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["output"][0]["filename"].startswith("issue_")
    img = await image_of(client, result)
    assert img.size == (24, 16) and img.getpixel((0, 0)) == (255, 0, 0)

    # A bare super().__init__() and self.modifications set by hand work too; __RANDOM_INT__
    # inside a string becomes digits.
    r = await sync(client, asset_gateway, "BareInit", width=12)
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"bare-\d+_\d+_\.png", r.json()["output"][0]["filename"])
    assert (await image_of(client, r.json())).size == (12, 16)


async def test_a_required_modification_missing_is_422_naming_it(asset_gateway: Gateway, client: httpx.AsyncClient):
    body = {"input": {"modifier": "IssueStyle", "modifications": {"seed": 1}}}
    for path in ("/generate", "/generate/sync", "/generate/stream"):
        r = await client.post(asset_gateway.url + path, json=body)
        assert r.status_code == 422, (path, r.text)
        error = r.json()["error"]
        assert error["kind"] == "modifier" and error["type"] == "missing_modification"
        assert "modifications.prompt is required" in error["message"]
        assert error["details"]["missing"] == "prompt"


async def test_a_raising_modifier_fails_its_job_only(asset_gateway: Gateway, client: httpx.AsyncClient):
    r = await sync(client, asset_gateway, "Raising")
    assert r.status_code == 422, r.text
    result = r.json()
    assert result["status"] == "failed"
    assert result["error"]["kind"] == "modifier"
    assert "RuntimeError: this modifier is broken" in result["error"]["message"]
    ok = await sync(client, asset_gateway, "IssueStyle", prompt="after")
    assert ok.status_code == 200 and ok.json()["status"] == "completed"


async def test_unknown_modifier_is_400_listing_the_known_ones(asset_gateway: Gateway, client: httpx.AsyncClient):
    for path in ("/generate", "/generate/sync", "/generate/stream"):
        r = await client.post(asset_gateway.url + path, json={"input": {"modifier": "NoSuchThing"}})
        assert r.status_code == 400, r.text
        body = r.json()
        assert "unknown modifier 'NoSuchThing'" in body["detail"]
        for name in ("ImageEdit", "BlurScale", "Text2Image", "Image2Image", "IssueStyle"):
            assert name in body["detail"] and name in body["known"]


async def test_modifiers_are_listed_with_typed_schemas(asset_gateway: Gateway, client: httpx.AsyncClient):
    listing = (await client.get(asset_gateway.url + "/modifiers")).json()["modifiers"]
    by_name = {m["name"]: m for m in listing}
    # The broken module and the mapping with a typo are left out; the rest serve.
    assert set(by_name) == {"BlurScale", "ImageEdit", "Image2Image", "Text2Image", "IssueStyle", "BareInit", "Raising"}
    assert "broken.py" in asset_gateway.log() and "'widht'" in asset_gateway.log()

    blur = by_name["BlurScale"]
    assert blur["kind"] == "declarative" and blur["workflow"] == "blur_scale.json"
    props = blur["parameters"]["properties"]
    assert props["width"]["type"] == "integer" and props["width"]["minimum"] == 1 and props["width"]["maximum"] == 4096
    assert props["method"]["enum"] == ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    assert props["sigma"]["type"] == "number" and props["sigma"]["default"] == 1.0
    assert blur["parameters"]["required"] == ["image"]
    assert by_name["ImageEdit"]["parameters"]["properties"]["effect"]["enum"] == ["invert", "blur", "none"]
    assert by_name["Text2Image"]["kind"] == "python" and by_name["Text2Image"]["parameters"] is None

    one = await client.get(asset_gateway.url + "/modifiers/ImageEdit")
    assert one.status_code == 200 and one.json()["name"] == "ImageEdit"
    missing = await client.get(asset_gateway.url + "/modifiers/Nope")
    assert missing.status_code == 404 and "ImageEdit" in missing.json()["detail"]

    spec = (await client.get(asset_gateway.url + "/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert schemas["BlurScaleModifications"]["properties"]["height"]["maximum"] == 4096
    refs = [s.get("$ref") for s in schemas["GenerateInput"]["properties"]["modifications"]["anyOf"]]
    assert "#/components/schemas/ImageEditModifications" in refs
    examples = spec["paths"]["/generate/sync"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["modifier_BlurScale"]["value"]["input"]["modifier"] == "BlurScale"
    assert (await client.get(asset_gateway.url + "/docs")).status_code == 200


async def test_classic_modifiers_build_their_workflows(asset_gateway: Gateway, client: httpx.AsyncClient,
                                                       files: FilesServer, served):
    """Text2Image and Image2Image need model weights this ComfyUI lacks: the workflows they
    build reach ComfyUI (its image fetched and uploaded first), which refuses only the
    checkpoint."""
    r = await sync(client, asset_gateway, "Text2Image", prompt="a lighthouse at dusk", steps=4)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["kind"] == "rejected" and set(error["node_errors"]) == {"4"}
    assert "ckpt_name" in str(error["node_errors"]["4"])
    r = await sync(client, asset_gateway, "Text2Image", steps=4)
    assert r.status_code == 422 and "modifications.prompt is required" in r.json()["error"]["message"]

    url = served(png_bytes(16, 16, BLUE))
    r = await sync(client, asset_gateway, "Image2Image", prompt="oil painting", input_image=url)
    assert r.status_code == 400, r.text
    assert set(r.json()["error"]["node_errors"]) == {"4"}  # LoadImage (10) found its uploaded file
    assert files.hits[urlparse(url).path] == 1


async def test_random_int_placeholders_in_a_raw_workflow(asset_gateway: Gateway, comfyui: str,
                                                         client: httpx.AsyncClient):
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "r-__RANDOM_INT__"}}}
    r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"r-\d+_\d+_\.png", r.json()["output"][0]["filename"])
    # A whole value becomes an integer of up to 32 bits, each occurrence its own. ComfyUI keeps
    # the prompt it was sent in its history: a node that no output needs is never validated or
    # run, so its values show exactly what the gateway sent, whatever number was drawn.
    for n in ("3", "4"):
        wf[n] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                        "color": "__RANDOM_INT__"}}
    r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    history = (await client.get(f"{comfyui}/history/{job_id}")).json()
    sent = history[job_id]["prompt"][2]
    drawn = [sent[n]["inputs"]["color"] for n in ("3", "4")]
    assert all(type(v) is int and 0 <= v <= 2**32 - 1 for v in drawn) and drawn[0] != drawn[1], drawn
    assert re.fullmatch(r"[0-9a-f-]{36}/r-\d+", sent["2"]["inputs"]["filename_prefix"])


async def test_same_request_id_and_modifier_is_the_same_job(asset_gateway: Gateway, client: httpx.AsyncClient):
    rid = str(uuid.uuid4())
    body = {"input": {"request_id": rid, "modifier": "IssueStyle", "modifications": {"prompt": "idem"}}}
    first = await client.post(asset_gateway.url + "/generate/sync", json=body)
    again = await client.post(asset_gateway.url + "/generate/sync", json=body)
    assert first.status_code == again.status_code == 200
    assert first.json()["created_at"] == again.json()["created_at"]
