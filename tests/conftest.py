"""Fixtures: a real ComfyUI (installed from PyPI at test time), the fake one, and gateways
started as real server processes on real ports."""

from __future__ import annotations

import base64
import io
import logging
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

    def reset(self) -> "Fake":
        """Knobs to defaults, stats zeroed, queue and history forgotten: a clean state for the
        next test sharing this fake (its sockets stay connected)."""
        httpx.post(self.url + "/fake/reset", timeout=10).raise_for_status()
        return self


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("comfyui")
    proc, url = start_comfyui(base / "data", base / "comfyui.log")
    yield url
    proc.stop()


class GatewayStarter:
    """Starts gateways and stops them all when its owner (a test, a module, the session) ends;
    before stopping, checks that none still has a job waiting or in flight: each test accounts
    for the end state of every job it started."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self.started: list[Gateway] = []

    def __call__(self, comfyui_url: str, **env: Any) -> Gateway:
        root = self._tmp.mktemp("gateway")
        out = root / "outputs"
        settings = {"COMFYUI_API_BASE": comfyui_url, "OUTPUT_DIR": str(out), "SSE_PING_SECONDS": "1"}
        settings.update({k.upper(): str(v) for k, v in env.items()})
        proc, url = start_gateway(settings, root / "gateway.log", cwd=root)
        gw = Gateway(proc, url, out)
        self.started.append(gw)
        return gw

    def stop_all(self) -> None:
        for gw in self.started:
            gw.proc.stop()


_checks = httpx.Client(timeout=10)  # one client for every idle check: a new one costs ~40 ms
# httpx logs every request at INFO: noise in every failure report, and an error once a test's
# own logging setup has closed the stream it wrote to.
logging.getLogger("httpx").setLevel(logging.WARNING)


def assert_idle(gateways: list[Any], timeout: float = 15) -> None:
    """Every gateway still running (anything with .url and .proc) has no job waiting or in
    flight, waiting up to `timeout` for jobs that are settling."""
    for gw in gateways:
        deadline = time.monotonic() + timeout
        while gw.proc.proc.poll() is None:
            try:
                health = _checks.get(gw.url + "/health").json()
            except httpx.TransportError:
                gw.proc.proc.wait(max(0.1, deadline - time.monotonic()))  # stopping: fine once gone
                continue
            busy = sum(health["queues"].values()) + sum(b["in_flight"] for b in health["backends"])
            if busy == 0:
                break
            assert time.monotonic() < deadline, f"jobs left behind on {gw.url}: {health}"
            time.sleep(0.05)


@pytest.fixture
def gateway_factory(tmp_path_factory: pytest.TempPathFactory):
    """`gateway_factory(comfyui_url, KEY=value...)`: a gateway that stops with the test."""
    starter = GatewayStarter(tmp_path_factory)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def module_gateway_factory(tmp_path_factory: pytest.TempPathFactory):
    """Gateways shared by the tests of one module, stopped with it."""
    starter = GatewayStarter(tmp_path_factory)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def session_gateway_factory(tmp_path_factory: pytest.TempPathFactory):
    starter = GatewayStarter(tmp_path_factory)
    yield starter
    starter.stop_all()


def _gateways_of(value: Any) -> list[Any]:
    """The live gateways a fixture value stands for: a Gateway, a starter's, a cluster's."""
    from .support.cluster import Cluster, Node

    owner = getattr(value, "__self__", value)  # a cluster's bound `start` used as a factory
    if isinstance(value, (Gateway, Node)):
        return [value]
    if isinstance(owner, GatewayStarter):
        return list(owner.started)
    if isinstance(owner, Cluster):
        return list(owner.nodes)
    return []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After every passing test, every gateway it used (its own, its cluster's, and the shared
    ones it asked for) has no job waiting or in flight: each test accounts for the end state
    of every job it started. Only those gateways are asked, with one client."""
    outcome = yield
    if outcome.excinfo is None:
        gateways = {id(g): g for v in getattr(item, "funcargs", {}).values() for g in _gateways_of(v)}
        assert_idle(list(gateways.values()))


@pytest.fixture(scope="session")
def gateway(comfyui: str, session_gateway_factory: Callable[..., Gateway]) -> Gateway:
    """One gateway in front of the real ComfyUI, shared by the end-to-end tests."""
    return session_gateway_factory(comfyui)


class FakeStarter:
    def __init__(self, base: Path):
        self.base, self.started = base, []

    def __call__(self) -> Fake:
        n = len(self.started)
        proc, url = start_fake_comfyui(self.base / f"fake{n}", self.base / f"fake{n}.log")
        self.started.append(proc)
        return Fake(proc, url)

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@pytest.fixture
def fake_factory(tmp_path: Path):
    """`fake_factory()`: a fake ComfyUI of the test's own, stopped with it."""
    starter = FakeStarter(tmp_path)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def module_fake_factory(tmp_path_factory: pytest.TempPathFactory):
    """Fakes shared by the tests of one module (reset them between tests), stopped with it."""
    starter = FakeStarter(tmp_path_factory.mktemp("fakes"))
    yield starter
    starter.stop_all()


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
def s3_gateway(comfyui: str, session_gateway_factory: Callable[..., Gateway], s3_open: S3Server) -> Gateway:
    """Outputs to the env-configured bucket; loopback open for request-named endpoints and
    webhooks (everything in the tests lives on 127.0.0.1); one postprocess worker, so a
    stage blocked by a webhook would show at once."""
    return session_gateway_factory(
        comfyui, S3_BUCKET_NAME="env-bucket", S3_ENDPOINT_URL=s3_open.url, S3_REGION="us-east-1",
        S3_ACCESS_KEY_ID=s3_open.access_key_id, S3_SECRET_ACCESS_KEY=s3_open.secret_access_key,
        S3_PREFIX="gw", S3_PART_SIZE=str(5 * 1024 * 1024), S3_RETRIES="1",
        ASSET_ALLOWED_NETWORKS="127.0.0.0/8", WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_BACKOFF="0.05",
        WEBHOOK_RETRIES="3", POSTPROCESS_WORKERS="1")
