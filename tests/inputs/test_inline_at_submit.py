"""A big inline input (a data: URI) is stored as an asset as the request arrives, before the job
is created: the job's record never carries the bytes, not even in its first write, and the
request keeps its identity (the same bytes name the same asset)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from comfy_gateway.inputs.inline import BIG
from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.pipeline.idempotency import DuplicateRequest
from comfy_gateway.pipeline.runtime import Runtime
from comfy_gateway.settings import Settings

from ..conftest import png_bytes


def _payload(image: str, request_id: str | None = None) -> dict:
    payload = {"workflow_json": {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}
    if request_id:
        payload["request_id"] = request_id
    return payload


@pytest.fixture
def runtime(tmp_path):
    # Not started: no worker takes the job, so the store holds it as it was first written.
    return Runtime(Settings(output_dir=tmp_path / "out", assets_dir=tmp_path / "assets"), store=MemoryJobStore())


def _big_png() -> bytes:
    png = png_bytes(300, 300, (1, 2, 3)) + bytes(BIG)  # trailing bytes: still a PNG to a sniffer
    assert len(base64.b64encode(png)) > BIG
    return png


async def test_a_big_data_uri_is_an_asset_from_the_first_write(runtime, tmp_path):
    png = _big_png()
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    job, created = await runtime.submit(_payload(uri, "r1"))
    sha = hashlib.sha256(png).hexdigest()
    stored = await runtime.store.get(job.id)
    assert created and stored.request["workflow_json"]["1"]["inputs"]["image"] == f"asset://{sha}"
    assert (tmp_path / "assets" / sha).read_bytes() == png
    # The same request again is the same job: its identity did not change with the bytes' name.
    again, created = await runtime.submit(_payload(uri, "r1"))
    assert again.id == job.id and not created
    other = "data:image/png;base64," + base64.b64encode(png + b"x").decode()
    with pytest.raises(DuplicateRequest):
        await runtime.submit(_payload(other, "r1"))


async def test_small_and_undecodable_data_uris_are_left_for_preprocessing(runtime):
    small = "data:image/png;base64," + base64.b64encode(png_bytes(4, 4, (0, 0, 0))).decode()
    job, _ = await runtime.submit(_payload(small))
    assert (await runtime.store.get(job.id)).request["workflow_json"]["1"]["inputs"]["image"] == small
    broken = "data:image/png;base64," + "!" * BIG  # refused later, naming the input
    job, _ = await runtime.submit(_payload(broken))
    assert (await runtime.store.get(job.id)).request["workflow_json"]["1"]["inputs"]["image"] == broken


async def test_a_big_data_uri_that_cannot_be_stored_is_left_for_preprocessing(tmp_path):
    (tmp_path / "not-a-folder").write_text("x")  # ASSETS_DIR a file: saving there fails
    runtime = Runtime(Settings(output_dir=tmp_path / "out", assets_dir=tmp_path / "not-a-folder"),
                      store=MemoryJobStore())
    uri = "data:image/png;base64," + base64.b64encode(_big_png()).decode()
    job, created = await runtime.submit(_payload(uri))
    assert created and (await runtime.store.get(job.id)).request["workflow_json"]["1"]["inputs"]["image"] == uri
