"""The early workflow check (workflows/validate.py) answers exactly as ComfyUI's POST /prompt:
the same refusals, with the same error and node_errors, for the recorded cases (0.3.75 and
0.33.0) and for the real CPU ComfyUI asked the same prompts live; and it never refuses what
ComfyUI accepts."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from comfy_gateway.workflows.validate import is_modern, validate_prompt

from .conftest import empty_save
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
