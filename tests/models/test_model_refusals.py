"""Model URLs refused: the address guard's whole table applies to them, and a file too big,
not a model, unreachable or undeliverable is a clear 4xx naming the input; a download that
fails late fails its job only."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from comfy_gateway.net.guard import NetworkPolicy, UrlRefused, check_url

from ..conftest import Gateway, empty_save, png_bytes
from ..inputs.test_refusals import PRIVATE, SCHEMES, loopback_urls
from ..support.files_server import FilesServer
from ..support.procs import free_port
from .conftest import lora_workflow, upscale_workflow

PATHS = ("/generate", "/generate/sync", "/generate/stream")


async def _refused(client: httpx.AsyncClient, gw: Gateway, workflow: dict, status: int, type_: str,
                   where: str, path: str = "/generate") -> str:
    r = await client.post(gw.url + path, json={"input": {"workflow_json": workflow}})
    assert r.status_code == status, (path, r.text)
    error = r.json()["error"]
    assert error["kind"] == "input" and error["type"] == type_, error
    assert error["message"].startswith(where), error["message"]
    return error["message"]


async def test_guard_table_applies_to_model_urls(guarded_model_gateway: Gateway, client: httpx.AsyncClient,
                                                 model_files: FilesServer):
    before = model_files.total_hits
    for i, url in enumerate(loopback_urls(model_files.port, free_port())):
        url = url.replace("/x.png", "/lora.safetensors")
        message = await _refused(client, guarded_model_gateway, lora_workflow(url), 400, "input_refused",
                                 "node 2 input 'lora_name'", PATHS[i % 3])
        assert "not a public address" in message, (url, message)
        assert "secret" not in message and "secret" not in guarded_model_gateway.log()
    policy = NetworkPolicy.parse("")
    for url in PRIVATE:
        with pytest.raises(UrlRefused):
            check_url(url, policy)  # in this process first: nothing goes out if the guard broke
        message = await _refused(client, guarded_model_gateway, lora_workflow(url), 400, "input_refused",
                                 "node 2 input 'lora_name'")
        assert "is not a public address" in message
    for url in SCHEMES:
        await _refused(client, guarded_model_gateway, lora_workflow(url), 400, "input_refused",
                       "node 2 input 'lora_name'")
    assert model_files.total_hits == before


async def test_too_big_not_a_model_and_unreachable(shared_gateway: Gateway, client: httpx.AsyncClient,
                                                   model_files: FilesServer, model_url, srvgg: bytes):
    big = model_url(srvgg + b"\0" * (2000001 - len(srvgg)), "big.safetensors")
    message = await _refused(client, shared_gateway, upscale_workflow(big), 413, "input_too_large",
                             "node 2 input 'model_name'")
    assert "2000001 bytes, over the limit of 2000000 bytes (MAX_MODEL_BYTES)" in message
    for body, name in [(png_bytes(8, 8, (1, 2, 3)), "image.safetensors"),
                       (b"<html><body>Sign in to download</body></html>", "page.ckpt"),
                       (b"\0" * 4096, "zeros.pth")]:
        message = await _refused(client, shared_gateway, upscale_workflow(model_url(body, name)), 415,
                                 "input_type", "node 2 input 'model_name'")
        assert "not a model file" in message
    missing = model_files.url + "/nothing-here.safetensors"
    message = await _refused(client, shared_gateway, upscale_workflow(missing), 422, "input_unavailable",
                             "node 2 input 'model_name'")
    assert "HTTP 404" in message


async def test_no_way_to_deliver_says_how_to_enable_one(no_way_gateway: Gateway, client: httpx.AsyncClient,
                                                        model_files: FilesServer):
    before = model_files.total_hits
    message = await _refused(client, no_way_gateway, lora_workflow("https://example.com/style.safetensors"),
                             400, "input_refused", "node 2 input 'lora_name'")
    assert "SHARED_MODELS_DIR" in message and "--enable-assets" in message
    assert model_files.total_hits == before


async def test_a_late_download_failure_fails_only_its_job(shared_gateway: Gateway, client: httpx.AsyncClient,
                                                          stall_server: str):
    # The server sends a model's first bytes at once, then stalls: POST /generate answers once
    # the input is checked (address, declared size, first bytes), without waiting for the
    # download; past MODEL_TIMEOUT (3 s) the download fails, and with it this job only.
    url = stall_server + "/big-x2.safetensors"
    r = await client.post(shared_gateway.url + "/generate", json={"input": {"workflow_json": upscale_workflow(url)}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "preprocessing" and "downloading" in job["message"], job
    # While it runs, /queue-info shows the download and how far it is.
    downloading = (await client.get(shared_gateway.url + "/queue-info")).json()["models"]["downloading"]
    assert downloading[url]["total"] > downloading[url]["bytes"] >= 4096, downloading
    other = await client.post(shared_gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})
    assert other.status_code == 200 and other.json()["status"] == "completed", other.text

    deadline = asyncio.get_running_loop().time() + 30
    while (job := (await client.get(f"{shared_gateway.url}/result/{job['id']}")).json())["status"] == "preprocessing":
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.1)
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["kind"] == "input" and error["type"] == "input_unavailable", error
    assert error["message"].startswith("node 2 input 'model_name'") and "MODEL_TIMEOUT" in error["message"]
