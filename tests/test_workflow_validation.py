"""The early workflow check (workflows/validate.py) answers exactly as ComfyUI's POST /prompt:
the same refusals, with the same error and node_errors, for the recorded cases (0.3.75 and
0.33.0) and for the real CPU ComfyUI asked the same prompts live; and it never refuses what
ComfyUI accepts."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

import httpx
import pytest

from comfy_gateway.workflows.validate import is_modern, validate_prompt

from .conftest import empty_save, png_bytes
from .support.procs import free_port, start_fake_comfyui
from .support.transcripts import transcript

E = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}
S = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}


def _e(**kw: Any) -> dict[str, Any]:
    return {"class_type": "EmptyImage", "inputs": {**E["inputs"], **kw}}


# The prompts behind 30_invalid_prompts.json (those with a prompt to check).
CASES = {
    "unknown_class_type": {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": S},
    "missing_required_input": {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64,
                                                                            "batch_size": 1}}, "2": S},
    "missing_link_input": {"1": E, "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}},
    "value_out_of_range": {"1": _e(width=0), "2": S},
    "wrong_value_type": {"1": _e(width="abc"), "2": S},
    "bad_combo_value": {"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}, "2": S},
    "link_to_missing_node": {"1": E, "2": {**S, "inputs": {"images": ["99", 0], "filename_prefix": "x"}}},
    "link_type_mismatch": {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64,
                                                                              "batch_size": 1}}, "2": S},
    "no_output_node": {"1": E},
    "empty_prompt": {},
    "node_missing_class_type": {"1": {"inputs": {}}, "2": S},
}

# Prompts ComfyUI accepts that a careless check would refuse.
ACCEPTED = {
    "plain": empty_save(),
    "int_as_string_and_float": {"1": _e(width="64", height=32.0), "2": S},
    "url_for_an_image": {"1": {"class_type": "LoadImage", "inputs": {"image": "https://example.com/cat.png"}},
                         "2": S},
    "asset_reference": {"1": {"class_type": "LoadImage", "inputs": {"image": "asset://" + "a" * 64}}, "2": S},
    "broken_node_not_reaching_an_output": {"1": E, "2": S, "3": {"class_type": "ImageInvert", "inputs": {}}},
    "wrapped_value": {"1": _e(width={"__value__": 64}), "2": S},
}


def _strip_tracebacks(body: Any) -> Any:
    body = copy.deepcopy(body)
    for node in (body.get("node_errors") or {}).values():
        for err in node["errors"]:
            err["extra_info"].pop("traceback", None)
    return body


@pytest.fixture(scope="module")
def catalog(comfyui: str) -> dict[str, Any]:
    return httpx.get(comfyui + "/object_info", timeout=60).json()


@pytest.mark.transcripts
@pytest.mark.parametrize("version", ["v0.3.75", "v0.33.0"])
def test_refusals_match_the_transcripts(catalog, version):
    recorded = transcript("30_invalid_prompts.json", version)
    for name, prompt in CASES.items():
        refusal = validate_prompt(prompt, catalog, modern=version == "v0.33.0")
        assert refusal is not None, name
        assert recorded[name]["status"] == 400
        assert _strip_tracebacks(refusal.body()) == _strip_tracebacks(recorded[name]["body"]), name


async def test_refusals_match_the_live_comfyui(comfyui, catalog, client):
    for name, prompt in CASES.items():
        r = await client.post(comfyui + "/prompt", json={"prompt": prompt})
        assert r.status_code == 400, name
        refusal = validate_prompt(prompt, catalog)
        assert refusal is not None and _strip_tracebacks(refusal.body()) == _strip_tracebacks(r.json()), name


def test_accepted_prompts_are_not_refused(catalog):
    for name, prompt in ACCEPTED.items():
        assert validate_prompt(prompt, catalog) is None, name


def test_empty_choice_list_is_a_models_folder_not_a_refusal(catalog):
    # No checkpoints on this CPU ComfyUI: its choice list is empty, and a model may be delivered later.
    assert catalog["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == []
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
              "2": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
              "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    assert validate_prompt(prompt, catalog) is None


def test_a_non_empty_choice_list_is_checked(catalog):
    prompt = {"1": E, "2": {"class_type": "ImageScale", "inputs": {
        "image": ["1", 0], "upscale_method": "sideways", "width": 8, "height": 8, "crop": "disabled"}},
        "3": {**S, "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    refusal = validate_prompt(prompt, catalog)
    assert refusal is not None
    (err,) = refusal.node_errors["2"]["errors"]
    assert err["type"] == "value_not_in_list" and err["details"].startswith("upscale_method: 'sideways' not in [")


def test_versions():
    assert is_modern("0.33.0") and is_modern("1.0.0")
    assert not is_modern("0.3.75") and not is_modern(None) and not is_modern("garbage")


async def test_a_backend_that_reconnects_is_asked_again(tmp_path, gateway_factory, client):
    """The catalog of a backend is fetched again after it comes back: a file that was in its
    input folder before a restart, and is gone after, is refused at submission (a backend that
    kept the old list would accept it and fail in ComfyUI later)."""
    port = free_port()
    proc, url = start_fake_comfyui(tmp_path / "before", tmp_path / "before.log", port=port)
    try:
        gw = gateway_factory(url)
        r = await client.post(url + "/upload/image", files={"image": ("kept.png", png_bytes(4, 4, (1, 2, 3)), "image/png")},
                              data={"overwrite": "true"})
        name = r.json()["name"]
        wf = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rc"}}}
        ok = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": wf}})
        assert ok.status_code == 200, ok.text
    finally:
        proc.stop()
    await _backend_state(client, gw.url, connected=False)
    proc, _ = start_fake_comfyui(tmp_path / "after", tmp_path / "after.log", port=port)  # an empty input folder
    try:
        await _backend_state(client, gw.url, connected=True)
        r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": wf}})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert r.json()["backend"] is None and err["kind"] == "rejected"
        assert err["node_errors"]["1"]["errors"][0]["details"] == f"image - Invalid image file: {name}"
    finally:
        proc.stop()


async def _backend_state(client, gw_url: str, *, connected: bool, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        backends = (await client.get(gw_url + "/health")).json()["backends"]
        if all(b["websocket_connected"] is connected for b in backends):
            return
        assert asyncio.get_running_loop().time() < deadline, backends
        await asyncio.sleep(0.1)


def test_a_url_or_asset_where_a_choice_goes_is_left_to_the_gateway(catalog):
    """A backend with one checkpoint: another name is refused, but a URL or asset:// reference
    is not judged (the gateway fetches it and puts the uploaded file's name there)."""
    with_model = copy.deepcopy(catalog)
    with_model["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["local.safetensors"]

    def prompt(ckpt: str) -> dict[str, Any]:
        return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
                "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
                "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}
    refusal = validate_prompt(prompt("other.safetensors"), with_model)
    assert refusal is not None and refusal.node_errors["1"]["errors"][0]["type"] == "value_not_in_list"
    assert validate_prompt(prompt("local.safetensors"), with_model) is None
    assert validate_prompt(prompt("https://example.com/models/sd15.safetensors"), with_model) is None
    assert validate_prompt(prompt("asset://" + "b" * 64), with_model) is None


async def test_files_uploaded_one_after_another_are_each_accepted(gateway, comfyui, client):
    """A choice the cached list lacks is looked up again for every submission that needs it
    (a look-up that began before the file came cannot prove it absent)."""
    for i in range(3):
        r = await client.post(comfyui + "/upload/image", data={"overwrite": "true"},
                              files={"image": (f"seq-{uuid.uuid4().hex}.png", png_bytes(4, 4, (i, i, i)), "image/png")})
        wf = {"1": {"class_type": "LoadImage", "inputs": {"image": r.json()["name"]}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "seq"}}}
        done = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": wf}})
        assert done.status_code == 200, done.text


async def test_with_several_backends_one_that_accepts_is_enough(comfyui, fake_factory, gateway_factory, client):
    """The router may send a job to any backend in rotation: a workflow is refused up front only
    when none of them would take it (here FakeFail exists on the fake only)."""
    fake = fake_factory()
    gw = gateway_factory(f"{comfyui},{fake.url}")
    await _backend_state(client, gw.url, connected=True)
    only_on_fake = {"1": E, "2": {"class_type": "FakeFail", "inputs": {"images": ["1", 0], "message": "x"}},
                    "3": {**S, "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": only_on_fake}})
    assert r.status_code == 202, r.text
    await client.post(f"{gw.url}/result/{r.json()['id']}/cancel")  # wherever it went, it need not run
    nowhere = {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": S}
    r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": nowhere}})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_prompt", r.text
