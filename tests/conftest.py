"""Fixtures: a real ComfyUI (installed from PyPI at test time), the fake one, and gateways
started as real server processes on real ports."""

from __future__ import annotations

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
