"""The parts of models by URL that need no server: telling a model file from its first bytes,
the loader table (and the operator's extension of it), the names files get, and the on-disk
cache's size cap, least-recently-used eviction and memory of what it holds across restarts."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import aiohttp
import pytest

from comfy_gateway.inputs.errors import InputTooLarge, InputWrongType
from comfy_gateway.inputs.fetch import FetchLimits
from comfy_gateway.inputs.find import find_inputs
from comfy_gateway.inputs.model_cache import ModelCache
from comfy_gateway.inputs.models import LoaderTable, model_filename, sniff_model, split_model_refs
from comfy_gateway.net.guard import NetworkPolicy

from ..conftest import png_bytes


def safetensors(payload: bytes = b"\0" * 64) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(payload) // 4], "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


@pytest.mark.parametrize("head, fmt", [
    (safetensors(), "safetensors"), (b"GGUF\x03\0\0\0" + b"\0" * 16, "gguf"),
    (b"PK\x03\x04" + b"\0" * 30, "torch-zip"), (b"\x80\x02}q\0(X\x05\0\0\0" + b"\0" * 8, "pickle"),
])
def test_model_formats_are_told_from_content(head: bytes, fmt: str):
    assert sniff_model(head[:16]) == fmt


@pytest.mark.parametrize("head", [png_bytes(4, 4, (0, 0, 0)), b"<!DOCTYPE html><html>", b"\0" * 16,
                                  b'{"error": "login"}', struct.pack("<Q", 1 << 40) + b"{" + b"\0" * 7, b"PK"])
def test_other_content_is_not_a_model(head: bytes):
    with pytest.raises(InputWrongType, match="not a model file"):
        sniff_model(head[:16])


def test_names_are_stable_per_content_and_listable_by_loaders():
    sha = "ab" * 32
    assert model_filename("https://h.example/x/My LoRA.safetensors?sig=1", "safetensors", sha) == \
        f"{sha[:12]}-My_LoRA.safetensors"
    # An extension the format does not have is replaced by the format's own.
    assert model_filename("https://h.example/download?id=7", "safetensors", sha) == f"{sha[:12]}-download.safetensors"
    assert model_filename("https://h.example/a.safetensors", "pickle", sha) == f"{sha[:12]}-a.ckpt"
    assert model_filename("asset://" + sha, "gguf", sha) == f"{sha[:12]}-model.gguf"
    assert model_filename("https://h.example/../../etc/passwd.pth", "torch-zip", sha) == f"{sha[:12]}-passwd.pth"


def test_loader_table_and_its_extension(tmp_path: Path):
    extra = tmp_path / "loaders.json"
    extra.write_text(json.dumps({"MyLoraStack": {"lora_1": "loras"}, "LoraLoader": {"lora_name": "my_loras"}}))
    table = LoaderTable.load(extra)
    workflow = {
        "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "https://h.example/a.safetensors"}},
        "2": {"class_type": "MyLoraStack", "inputs": {"lora_1": "asset://" + "0" * 64}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "https://h.example/cat.png"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ftp://h.example/m.ckpt"}},
        "5": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
    }
    models, others = split_model_refs(workflow, find_inputs(workflow), table)
    assert {(m.ref.path[0], m.folder) for m in models} == {("1", "my_loras"), ("2", "loras")}
    assert {r.path[0] for r in others} == {"3", "4"}  # an image; a refused scheme, refused as ever
    assert LoaderTable.load(None).folder("UNETLoader", "unet_name") == "diffusion_models"
    extra.write_text('{"X": ["loras"]}')
    with pytest.raises(ValueError, match="MODEL_LOADERS_FILE"):
        LoaderTable.load(extra)


def _asset(assets: Path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (assets / sha).write_bytes(data)
    return "asset://" + sha


def _cache(root: Path, assets: Path, max_bytes: int, max_file: int = 1 << 20) -> ModelCache:
    limits = FetchLimits(max_bytes=max_file, connect_timeout=1, total_timeout=5, max_redirects=0,
                         size_setting="MAX_MODEL_BYTES")
    return ModelCache(root, max_bytes, NetworkPolicy.parse(""), limits, assets)


async def test_cache_keeps_the_recently_used_within_its_size_and_remembers_across_restarts(tmp_path: Path):
    assets, root = tmp_path / "assets", tmp_path / "cache"
    assets.mkdir()
    refs = [_asset(assets, safetensors(bytes([i]) * 4000)) for i in range(3)]
    async with aiohttp.ClientSession() as session:
        cache = _cache(root, assets, max_bytes=9000)
        cache.start(session)
        a, b = await cache.obtain(refs[0]), await cache.obtain(refs[1])
        os.utime(cache.path(a.sha256), (1, 1))
        os.utime(cache.path(b.sha256), (2, 2))
        assert cache.get(a.sha256) is not None  # used now: b is the least recently used
        c = await cache.obtain(refs[2])
        assert cache.get(b.sha256) is None and not cache.path(b.sha256).exists()
        assert cache.get(a.sha256) is not None and cache.get(c.sha256) is not None
        assert cache.stats()["evictions"] == 1 and cache.stats()["bytes"] <= 9000

        again = _cache(root, assets, max_bytes=9000)
        again.start(session)
        assert {m.sha256 for m in map(again.get, (a.sha256, c.sha256)) if m} == {a.sha256, c.sha256}
        assert again.get(a.sha256).filename == a.filename and again.get(a.sha256).format == "safetensors"


async def test_cache_refuses_past_the_size_cap_and_leaves_no_part_file(tmp_path: Path):
    assets, root = tmp_path / "assets", tmp_path / "cache"
    assets.mkdir()
    ref = _asset(assets, safetensors(b"\0" * 5000))
    async with aiohttp.ClientSession() as session:
        cache = _cache(root, assets, max_bytes=1 << 30, max_file=4096)
        cache.start(session)
        with pytest.raises(InputTooLarge, match=r"more than 4096 bytes \(MAX_MODEL_BYTES\)"):
            await cache.obtain(ref)
        with pytest.raises(InputWrongType):
            await cache.obtain(_asset(assets, png_bytes(8, 8, (1, 1, 1))))
    assert list(root.iterdir()) == []
