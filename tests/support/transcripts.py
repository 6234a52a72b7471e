"""The recorded ComfyUI transcripts (shared/comfyui-protocol), the ground truth for the fake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def protocol_dir() -> Path | None:
    here = Path(__file__).resolve()
    for cand in [os.environ.get("COMFYUI_PROTOCOL_DIR"), here.parents[2] / "shared/comfyui-protocol",
                 here.parents[3] / "shared/comfyui-protocol", "/work/shared/comfyui-protocol"]:
        if cand and (Path(cand) / "v0.3.75").is_dir():
            return Path(cand)
    return None


PROTO = protocol_dir()


def transcript(name: str, version: str = "v0.3.75"):
    if PROTO is None:  # a missing ground truth is a failure, never a skip
        pytest.fail("shared/comfyui-protocol not found beside the clone: set COMFYUI_PROTOCOL_DIR")
    return json.loads((PROTO / version / name).read_text())
