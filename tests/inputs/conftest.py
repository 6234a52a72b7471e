"""Fixtures for modifiers and input assets: local file servers (one allowed, two that a refused
URL would reach if the guard let it), a modifiers folder with the shipped examples plus the
test's own, and two gateways in front of the real ComfyUI: one that allows loopback inputs
(127.0.0.1/32 only) and one with the default policy."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Callable

import pytest

from ..conftest import Gateway
from ..support.files_server import FilesServer, start_server
from ..support.procs import ROOT

WORKFLOW = """{
  "3": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 1, "color": 0}},
  "6": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "issue"}}
}
"""

# Written exactly as the issue shows users' modifiers, import line included.
ISSUE_STYLE = '''from modifiers.basemodifier import BaseModifier
import random


class IssueStyle(BaseModifier):
    WORKFLOW_JSON = "workflows/issue_style.json"

    def __init__(self, modifications={}):
        super().__init__(modifications)

    async def apply_modifications(self):
        self.workflow["3"]["inputs"]["color"] = await self.modify_workflow_value(
            "seed", random.randint(0, 2**24 - 1))
        self.workflow["6"]["inputs"]["filename_prefix"] = await self.modify_workflow_value("prompt")
        await super().apply_modifications()


class BareInit(BaseModifier):
    """The original's other style: a bare super().__init__(), then the modifications by hand."""

    WORKFLOW_JSON = "workflows/issue_style.json"

    def __init__(self, modifications={}):
        super().__init__()
        self.modifications = modifications

    async def apply_modifications(self):
        self.workflow["3"]["inputs"]["width"] = await self.modify_workflow_value("width", 8)
        self.workflow["6"]["inputs"]["filename_prefix"] = "bare-__RANDOM_INT__"
        await super().apply_modifications()


class Raising(BaseModifier):
    WORKFLOW_JSON = "workflows/issue_style.json"

    async def apply_modifications(self):
        raise RuntimeError("this modifier is broken")
'''


@pytest.fixture(scope="session")
async def files():
    """The allowed origin: 127.0.0.1, where the lenient gateway may fetch."""
    server = await start_server("127.0.0.1")
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def forbidden():
    """127.0.0.2: loopback too, but outside 127.0.0.1/32. Any hit here is a guard failure."""
    server = await start_server("127.0.0.2")
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def forbidden6():
    """[::1], counting too. Without an IPv6 loopback nothing could listen there, a count of 0
    would prove nothing, and the [::1] refusals would pass whatever the guard did: fail instead."""
    try:
        server = await start_server("::1")
    except OSError as exc:
        pytest.fail(f"this machine has no IPv6 loopback ([::1]: {exc}); the [::1] refusals need one")
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def content_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The repository's modifiers and workflows, plus the test's own and two broken ones."""
    root = tmp_path_factory.mktemp("content")
    modifiers, workflows = root / "mods", root / "flows"
    shutil.copytree(ROOT / "modifiers", modifiers)
    shutil.copytree(ROOT / "workflows", workflows)
    (workflows / "issue_style.json").write_text(WORKFLOW)
    (modifiers / "issue_style.py").write_text(ISSUE_STYLE)
    (modifiers / "broken.py").write_text("from modifiers.basemodifier import BaseModifier\nraise ImportError('no such thing')\n")
    (modifiers / "typo.json").write_text(
        '{"workflow": "blur_scale.json", "parameters": {"w": {"type": "integer", "node": "3", "input": "widht"}}}')
    return modifiers, workflows


def _env(content_dirs: tuple[Path, Path], **extra: str) -> dict[str, str]:
    modifiers, workflows = content_dirs
    return {"modifiers_dir": str(modifiers), "workflows_dir": str(workflows), **extra}


@pytest.fixture(scope="session")
def asset_gateway(comfyui: str, session_gateway_factory: Callable[..., Gateway], content_dirs) -> Gateway:
    """Loopback explicitly allowed (127.0.0.1 only), small limits so that tests stay quick."""
    return session_gateway_factory(comfyui, **_env(
        content_dirs, asset_allowed_networks="127.0.0.1/32", max_input_bytes="300000",
        input_timeout="3", input_connect_timeout="2", input_max_redirects="2"))


@pytest.fixture(scope="session")
def guarded_gateway(comfyui: str, session_gateway_factory: Callable[..., Gateway], content_dirs) -> Gateway:
    """The default policy: public addresses only."""
    return session_gateway_factory(comfyui, **_env(content_dirs))


_paths = itertools.count()


@pytest.fixture
def served(files: FilesServer) -> Callable[..., str]:
    """Serve bytes at a fresh path of the allowed server and return its URL."""

    def serve(body: bytes, content_type: str = "image/png", suffix: str = ".png", delay: float = 0.0) -> str:
        return files.serve(f"/f/{next(_paths)}{suffix}", body, content_type, delay)

    return serve
