"""The pure pieces of modifiers and inputs: finding inputs, data: URIs, placeholders, the
BaseModifier API, parameter tables, the content cache and shared work."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import pytest

from comfy_gateway.inputs.cache import Blob, ContentCache
from comfy_gateway.inputs.datauri import decode_data_uri
from comfy_gateway.inputs.errors import InputInvalid, InputTooLarge
from comfy_gateway.inputs.find import classify, find_inputs, set_at
from comfy_gateway.inputs.singleflight import SingleFlight
from comfy_gateway.inputs.sniff import extension, is_image, sniff
from comfy_gateway.workflows.discovery import discover, install_package
from comfy_gateway.workflows.params import InvalidModifications
from comfy_gateway.workflows.placeholders import replace_random_ints

from ..conftest import png_bytes


@pytest.mark.parametrize("value, kind", [
    ("https://example.com/a.png", "url"), ("HTTP://example.com/a", "url"), ("data:image/png;base64,AAAA", "data"),
    ("data:image/png;base64,AA\nAA", "data"), ("asset://" + "a" * 64, "asset"), ("file:///etc/passwd", "refused"),
    ("file:/etc/passwd", "refused"), ("ftp://host/x", "refused"), ("s3://bucket/key", "refused"),
    ("photo.png", None), ("a cat, see https://example.com", None), ("https://x.com/a b.png", None), ("", None),
])
def test_classify(value, kind):
    assert classify(value) == kind


def test_find_inputs_looks_only_at_node_inputs_and_names_each():
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "https://a/x.png"}, "_meta": {"title": "https://b/"}},
          "2": {"class_type": "Batch", "inputs": {"images": ["https://a/y.png", ["1", 0]], "opts": {"mask": "data:,x"}}},
          "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of https://a/z.png"}}}
    refs = find_inputs(wf)
    assert [(r.where, r.kind, r.expects_image) for r in refs] == [
        ("node 1 input 'image'", "url", True), ("node 2 input 'images[0]'", "url", True),
        ("node 2 input 'opts[mask]'", "data", False)]
    set_at(wf, refs[1].path, "done.png")
    assert wf["2"]["inputs"]["images"] == ["done.png", ["1", 0]]


def test_data_uris():
    png = png_bytes(2, 2, (1, 2, 3))
    b64 = base64.b64encode(png).decode()
    assert decode_data_uri("data:image/png;base64," + b64, 10**6) == (png, "image/png")
    wrapped = "\n".join(b64[i:i + 20] for i in range(0, len(b64), 20))
    assert decode_data_uri("data:image/png;base64," + wrapped, 10**6)[0] == png
    assert decode_data_uri("data:;base64," + base64.urlsafe_b64encode(png).decode().rstrip("="), 10**6) == (png, None)
    assert decode_data_uri("data:text/plain,hello%20world", 100) == (b"hello world", "text/plain")
    for bad in ("data:image/png;base64", "data:image/png;base64,!!!!", "data:,"):
        with pytest.raises(InputInvalid):
            decode_data_uri(bad, 100)
    with pytest.raises(InputTooLarge, match="MAX_INPUT_BYTES"):
        decode_data_uri("data:;base64," + "A" * 4000, 1000)  # refused before decoding


def test_sniffing_reads_content():
    assert sniff(png_bytes(2, 2, (0, 0, 0))) == "image/png" and extension("image/png") == ".png"
    assert sniff(b"<!doctype html><html><body>x</body></html>") == "text/html"
    assert extension("image/jpeg") == ".jpg" and extension("application/x-nothing-known") == ".bin"
    assert is_image("image/webp") and not is_image("image/svg+xml") and not is_image("text/html")


def test_random_int_placeholders():
    out = replace_random_ints({"seed": "__RANDOM_INT__", "p": "run-__RANDOM_INT__-__RANDOM_INT__",
                               "deep": [{"s": "__RANDOM_INT__"}, "literal", 3, None, True],
                               "near": "_RANDOM_INT_", "other": "RANDOMINT"})
    assert isinstance(out["seed"], int) and 0 <= out["seed"] <= 2**32 - 1
    head, a, b = out["p"].split("-")
    assert head == "run" and a.isdigit() and b.isdigit() and a != b
    assert isinstance(out["deep"][0]["s"], int) and out["deep"][1:] == ["literal", 3, None, True]
    assert out["near"] == "_RANDOM_INT_" and out["other"] == "RANDOMINT"


async def test_base_modifier_api_as_users_import_it(tmp_path: Path):
    install_package(tmp_path)
    from modifiers.basemodifier import BaseModifier, MissingModification  # noqa: E402 - the users' import line

    m = BaseModifier({"prompt": "cat", "steps": 0})
    assert await m.modify_workflow_value("prompt", "") == "cat"
    assert await m.modify_workflow_value("steps", 20) == 0  # a falsy value given is still given
    assert await m.modify_workflow_value("cfg", 7.5) == 7.5
    assert await m.modify_workflow_value("negative", "") == ""
    with pytest.raises(IndexError, match="seed required but not set") as exc:
        await m.modify_workflow_value("seed")
    assert isinstance(exc.value, MissingModification) and exc.value.key == "seed"
    bare = BaseModifier()
    bare.modifications = {"x": 1}
    assert await bare.modify_workflow_value("x") == 1
    assert isinstance(m.replace_random_ints({"s": "__RANDOM_INT__"})["s"], int)
    assert sys.modules["modifiers.basemodifier"].BaseModifier is BaseModifier


def _write(folder: Path, name: str, content: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))


async def test_discovery_validates_mapping_files_at_start(tmp_path: Path):
    mods, flows = tmp_path / "m", tmp_path / "w"
    _write(flows, "wf.json", {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
                              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}})
    _write(mods, "good.json", {"workflow": "wf.json", "parameters": {
        "size": {"type": "integer", "targets": [{"node": "1", "input": "width"}, {"node": "1", "input": "height"}],
                 "default": 16, "minimum": 1, "maximum": 64}}})
    _write(mods, "bad_default.json", {"workflow": "wf.json", "parameters": {
        "w": {"type": "integer", "node": "1", "input": "width", "default": 0, "minimum": 1}}})
    _write(mods, "no_node.json", {"workflow": "wf.json", "parameters": {"w": {"type": "integer", "node": "9", "input": "x"}}})
    _write(mods, "no_workflow.json", {"workflow": "missing.json", "parameters": {}})
    _write(mods, "not_a_mapping.json", {"1": {"class_type": "EmptyImage"}})
    _write(mods, "syntax.py", "def (:\n")
    found, problems = discover(mods, flows)
    assert list(found) == ["good"]
    text = "\n".join(problems)
    assert "bad_default.json: parameter 'w': its default 0 does not fit" in text
    assert "no_node.json: parameter 'w' sets node '9', which the workflow does not have" in text
    assert "no_workflow.json" in text and "missing.json" in text
    assert "not_a_mapping.json: not a modifier mapping" in text
    assert "syntax.py: SyntaxError" in text

    good = found["good"]
    wf = await good.build({"size": 32})
    assert wf["1"]["inputs"] == {"width": 32, "height": 32}
    assert (await good.build({}))["1"]["inputs"]["width"] == 16
    with pytest.raises(InvalidModifications) as exc:
        good.check({"size": 65, "extra": 1})
    assert [(e["loc"], e["type"]) for e in exc.value.errors] == [
        (["modifications", "size"], "less_than_equal"), (["modifications", "extra"], "extra_forbidden")]


def test_content_cache_evicts_least_recently_used_by_bytes():
    def blob(name: str, size: int) -> Blob:
        return Blob(name * 64, b"x" * size, "image/png", ".png")

    cache = ContentCache(max_bytes=100)
    a, b, c = blob("a", 40), blob("b", 40), blob("c", 40)
    cache.put(a)
    cache.put(b)
    cache.remember_url("http://x/a", a.sha256, "image/png")
    assert cache.get(a.sha256) is a  # a is now the most recently used
    cache.put(c)  # over 100 bytes: b goes
    assert cache.get(b.sha256) is None and cache.get(a.sha256) is a and cache.size == 80
    cache.put(blob("d", 60))  # c is now the least recently used: it goes
    assert cache.get(c.sha256) is None and cache.by_url("http://x/a") == (a, "image/png")
    cache.put(blob("f", 100))  # d, then a go; the URL that gave a is forgotten with it
    assert cache.by_url("http://x/a") is None and cache.get(a.sha256) is None
    cache.put(blob("e", 500))  # larger than the whole cache: never kept
    assert cache.get("e" * 64) is None and cache.size <= 100


async def test_single_flight_shares_one_run_and_survives_a_waiter_leaving():
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()  # one request gives up: the others still get the result
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == [42] * 4 and calls == 1 and len(flights) == 0

    async def fail() -> int:
        raise ValueError("shared failure")

    for outcome in await asyncio.gather(*(flights.run("e", fail) for _ in range(3)), return_exceptions=True):
        assert isinstance(outcome, ValueError)
