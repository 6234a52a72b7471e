"""Fixtures: a real ComfyUI (installed from PyPI at test time), the fake one, and gateways
started as real server processes on real ports."""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from PIL import Image

from .support.procs import Proc, start_comfyui, start_fake_comfyui, start_gateway


class Gateway:
    def __init__(self, proc: Proc, url: str, output_dir: Path):
        self.proc, self.url, self.output_dir = proc, url, output_dir

    def log(self) -> str:
        return self.proc.output()


class Fake:
    def __init__(self, proc: Proc, url: str):
        self.proc, self.url = proc, url

    def control(self, **knobs: Any) -> dict[str, Any]:
        r = httpx.post(self.url + "/fake/control", json=knobs, timeout=10)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/fake/stats", timeout=10).json()


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("comfyui")
    proc, url = start_comfyui(base / "data", base / "comfyui.log")
    yield url
    proc.stop()


LIVE_GATEWAYS: list[Gateway] = []


@pytest.fixture(scope="session")
def gateway_factory(tmp_path_factory: pytest.TempPathFactory):
    started: list[Proc] = []

    def make(comfyui_url: str, **env: str) -> Gateway:
        root = tmp_path_factory.mktemp("gateway")
        out = root / "outputs"
        settings = {"COMFYUI_API_BASE": comfyui_url, "OUTPUT_DIR": str(out), "SSE_PING_SECONDS": "1"}
        settings.update({k.upper(): str(v) for k, v in env.items()})
        proc, url = start_gateway(settings, root / "gateway.log", cwd=root)
        started.append(proc)
        gw = Gateway(proc, url, out)
        LIVE_GATEWAYS.append(gw)
        return gw

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(autouse=True)
def no_job_left_behind():
    """After every test, every gateway still running has no job waiting or in flight: each
    test accounts for the end state of every job it started."""
    yield
    for gw in LIVE_GATEWAYS:
        if gw.proc.proc.poll() is not None:
            continue
        for _ in range(150):
            health = httpx.get(gw.url + "/health", timeout=10).json()
            busy = sum(health["queues"].values()) + sum(b["in_flight"] for b in health["backends"])
            if busy == 0:
                break
            time.sleep(0.1)
        assert busy == 0, f"jobs left behind on {gw.url}: {health}"


@pytest.fixture(scope="session")
def gateway(comfyui: str, gateway_factory: Callable[..., Gateway]) -> Gateway:
    """One gateway in front of the real ComfyUI, shared by the end-to-end tests."""
    return gateway_factory(comfyui)


@pytest.fixture
def fake_factory(tmp_path: Path):
    started: list[Proc] = []

    def make() -> Fake:
        proc, url = start_fake_comfyui(tmp_path / f"fake{len(started)}", tmp_path / f"fake{len(started)}.log")
        started.append(proc)
        return Fake(proc, url)

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=60) as c:
        yield c


def png_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def empty_save(width: int = 64, height: int = 32, color: int = 0x112233, prefix: str = "t") -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


# -- outputs: S3, webhooks (issue 4) -----------------------------------------------------------
from .support.s3server import S3Server, start_s3_server  # noqa: E402
from .support.webhook_receiver import start_receiver  # noqa: E402

# A Standard Webhooks secret, as an operator would generate it.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"comfy-gateway-test-webhook-secret-32b").decode()


@pytest.fixture(scope="session")
def s3_open(tmp_path_factory: pytest.TempPathFactory):
    """moto without credential checks: presigned URLs download from it."""
    server = start_s3_server(tmp_path_factory.mktemp("s3open") / "moto.log", enforce_auth=False)
    server.create_bucket("env-bucket")
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def s3_auth(tmp_path_factory: pytest.TempPathFactory):
    """moto checking every signature against the one user it knows, like AWS would."""
    server = start_s3_server(tmp_path_factory.mktemp("s3auth") / "moto.log", enforce_auth=True)
    server.create_bucket("auth-bucket")
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
async def receiver():
    rec, runner = await start_receiver(WEBHOOK_SECRET)
    yield rec
    for event in rec.holds.values():
        event.set()
    await runner.cleanup()


@pytest.fixture(scope="session")
def s3_gateway(comfyui: str, gateway_factory: Callable[..., Gateway], s3_open: S3Server) -> Gateway:
    """Outputs to the env-configured bucket; loopback open for request-named endpoints and
    webhooks (everything in the tests lives on 127.0.0.1); one postprocess worker, so a
    stage blocked by a webhook would show at once."""
    return gateway_factory(
        comfyui, S3_BUCKET_NAME="env-bucket", S3_ENDPOINT_URL=s3_open.url, S3_REGION="us-east-1",
        S3_ACCESS_KEY_ID=s3_open.access_key_id, S3_SECRET_ACCESS_KEY=s3_open.secret_access_key,
        S3_PREFIX="gw", S3_PART_SIZE=str(5 * 1024 * 1024), S3_RETRIES="1",
        ASSET_ALLOWED_NETWORKS="127.0.0.0/8", WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_BACKOFF="0.05",
        WEBHOOK_RETRIES="3", POSTPROCESS_WORKERS="1")
