"""Configuration from .env and the environment, and the entry points users start."""

from __future__ import annotations

import os
import sys

import httpx

from .conftest import empty_save
from .support.procs import ROOT, Proc, free_port, wait_http


async def test_dotenv_in_the_working_directory_configures_the_service(fake_factory, tmp_path, client):
    fake = fake_factory()
    (tmp_path / ".env").write_text(f"COMFYUI_API_BASE={fake.url}\nMAX_QUEUE_SIZE=7\nPOSTPROCESS_WORKERS=3\n"
                                   f"OUTPUT_DIR={tmp_path / 'out'}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "COMFYUI_API", "MAX_", "OUTPUT_"))}
    env["API_PORT"] = str(port)
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, tmp_path / "gw.log", cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", 30, proc.proc)
        info = (await client.get(url + "/queue-info")).json()
        assert info["max_queue_size"] == 7 and info["queues"]["postprocess"]["workers"] == 3
        r = await client.post(url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})
        assert r.json()["status"] == "completed"
        assert (tmp_path / "out" / r.json()["id"]).is_dir()
    finally:
        proc.stop()


async def test_uvicorn_main_app_from_the_repo_root(fake_factory, tmp_path, client):
    fake = fake_factory()
    port = free_port()
    env = {**os.environ, "COMFYUI_API_BASE": fake.url, "OUTPUT_DIR": str(tmp_path / "out")}
    proc = Proc([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)], env, tmp_path / "uv.log", cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", 30, proc.proc)
        r = await client.post(url + "/generate/sync", json={"input": {"workflow_json": empty_save(10, 10)}})
        assert r.status_code == 200 and r.json()["status"] == "completed"
    finally:
        proc.stop()


def test_bad_settings_are_refused_at_start(tmp_path):
    env = {**os.environ, "MAX_QUEUE_SIZE": "-3", "API_PORT": str(free_port())}
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, tmp_path / "bad.log", cwd=tmp_path)
    assert proc.proc.wait(30) == 2
    proc.stop()
    assert "invalid configuration: MAX_QUEUE_SIZE: Input should be greater than or equal to 1" in proc.output()


def test_a_redis_prefix_that_would_move_the_hash_tag_is_refused_at_start(tmp_path):
    env = {**os.environ, "API_CACHE": "redis", "REDIS_PREFIX": "{mine}:", "API_PORT": str(free_port())}
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, tmp_path / "bad.log", cwd=tmp_path)
    assert proc.proc.wait(30) == 2
    proc.stop()
    assert "invalid configuration: REDIS_PREFIX: Value error, REDIS_PREFIX must not contain '{' or '}'" in proc.output()


def test_several_workers_need_a_shared_store(tmp_path):
    env = {**os.environ, "API_WORKERS": "2", "API_PORT": str(free_port())}
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, tmp_path / "w.log", cwd=tmp_path)
    assert proc.proc.wait(30) == 2
    proc.stop()
    assert "API_WORKERS > 1 needs a shared store" in proc.output()


def test_health_and_docs_need_no_key_httpx_sync(fake_factory, gateway_factory):
    fake = fake_factory()
    gw = gateway_factory(fake.url, API_KEYS="k")
    assert httpx.get(gw.url + "/docs").status_code == 200
    assert httpx.get(gw.url + "/health").status_code == 200
