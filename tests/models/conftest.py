"""Fixtures for models by URL: a real CPU ComfyUI of this suite's own whose models folder is the
gateway's SHARED_MODELS_DIR, a file server that counts every request, a tiny real upscaler."""

from __future__ import annotations

import asyncio
import itertools
from typing import Callable

import pytest
from aiohttp import web

from ..conftest import Gateway
from ..support.files_server import start_server
from ..support.models import make_srvgg
from ..support.procs import start_comfyui


@pytest.fixture(scope="session")
def model_comfyui(tmp_path_factory: pytest.TempPathFactory):
    """(url, its models folder): ComfyUI started with --base-directory reads models from there."""
    base = tmp_path_factory.mktemp("model-comfyui")
    proc, url = start_comfyui(base / "data", base / "comfyui.log")
    yield url, base / "data" / "models"
    proc.stop()


@pytest.fixture(scope="session")
async def model_files():
    server = await start_server("127.0.0.1")
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def stall_server(srvgg: bytes):
    """GET /<name>: declares a body larger than the upscaler, sends the upscaler's first 4 KiB
    (a valid safetensors head) at once, then nothing more: a download that fails late."""

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(len(srvgg) + 10**6)})
        await resp.prepare(request)
        await resp.write(srvgg[:4096])
        try:
            await asyncio.sleep(10)  # well past MODEL_TIMEOUT
        except asyncio.CancelledError:
            pass
        return resp

    app = web.Application()
    app.router.add_get("/{name}", stall)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.fixture(scope="session")
def srvgg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_srvgg(tmp_path_factory.mktemp("srvgg") / "tiny-x2.safetensors")


@pytest.fixture(scope="session")
def shared_gateway(model_comfyui, session_gateway_factory: Callable[..., Gateway], tmp_path_factory) -> Gateway:
    """In front of model_comfyui, writing models into its models folder; loopback downloads
    allowed (the file server lives there); small limits so refusals stay quick."""
    url, models_dir = model_comfyui
    return session_gateway_factory(url, shared_models_dir=str(models_dir), asset_allowed_networks="127.0.0.1/32",
                                   model_cache_dir=str(tmp_path_factory.mktemp("model-cache")),
                                   max_model_bytes="2000000", model_timeout="3")


@pytest.fixture(scope="session")
def guarded_model_gateway(model_comfyui, session_gateway_factory: Callable[..., Gateway], tmp_path_factory) -> Gateway:
    """The default address policy (public addresses only), a shared folder of its own."""
    return session_gateway_factory(model_comfyui[0], shared_models_dir=str(tmp_path_factory.mktemp("shared")),
                                   model_cache_dir=str(tmp_path_factory.mktemp("model-cache")))


@pytest.fixture(scope="session")
def no_way_gateway(model_comfyui, session_gateway_factory: Callable[..., Gateway], tmp_path_factory) -> Gateway:
    """No SHARED_MODELS_DIR, and ComfyUI 0.3.75 has no assets API: models cannot reach it."""
    return session_gateway_factory(model_comfyui[0], model_cache_dir=str(tmp_path_factory.mktemp("model-cache")))


def upscale_workflow(model: str, width: int = 16, height: int = 12, color: int = 0x336699,
                     prefix: str = "up") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }


def lora_workflow(lora: str) -> dict:
    """A LoRA loader fed by nothing valid: refusals happen before ComfyUI sees it."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["9", 0], "lora_name": lora,
                                                                "strength_model": 1.0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "lora"}},
    }


_paths = itertools.count()


@pytest.fixture
def model_url(model_files) -> Callable[..., str]:
    """Serve bytes at a fresh path of the counting server; its URL."""

    def serve(body: bytes, name: str = "tiny-x2.safetensors") -> str:
        return model_files.serve(f"/m/{next(_paths)}/{name}", body, "application/octet-stream")

    return serve

