"""Real model files for the tests, made by ComfyUI's own torch and spandrel: a tiny
SRVGGNetCompact (Real-ESRGAN Compact) upscaler, x2, 8 features, saved as safetensors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = """
import sys
from spandrel.architectures.Compact import Compact
from safetensors.torch import save_file
model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=int(sys.argv[2]))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
"""


def comfyui_python() -> Path:
    home = Path(os.environ.get("COMFYUI_HOME", Path.home() / ".cache/comfy-gateway/comfyui"))
    return home / "venv/bin/python"


def make_srvgg(path: Path, scale: int = 2) -> bytes:
    """Write the upscaler to `path` and return its bytes (random weights: a new file each call)."""
    subprocess.run([str(comfyui_python()), "-c", SCRIPT, str(path), str(scale)], check=True, timeout=300,
                   capture_output=True)
    return path.read_bytes()
