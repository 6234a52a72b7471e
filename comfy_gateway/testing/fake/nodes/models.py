"""UpscaleModelLoader and ImageUpscaleWithModel without torch: the loader lists
`models/upscale_models/` (so a name ComfyUI would not list is refused the same way) and reads
the scale from the safetensors header as spandrel does for an SRVGGNetCompact (the last
`body.N.bias` has out_channels * scale**2 entries); the upscaler resizes by that scale."""
from __future__ import annotations

import json
import math
import os
import re
import struct

from PIL import Image

from comfy_gateway.testing.fake.nodes.base import Images, Node

MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")


def models_dir(base: str, folder: str) -> str:
    return os.path.join(base, "models", folder)


def compact_scale(path: str) -> int:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    bodies = {int(m.group(1)): v["shape"] for k, v in header.items() if (m := re.fullmatch(r"body\.(\d+)\.bias", k))}
    in_nc = header["body.0.weight"]["shape"][1]
    return math.isqrt(bodies[max(bodies)][0] // in_nc)


class UpscaleModelLoader(Node):
    NAME, DISPLAY_NAME, CATEGORY = "UpscaleModelLoader", "Load Upscale Model", "loaders"
    MODULE, V3 = "comfy_extras.nodes_upscale_model", True
    RETURN_TYPES = ("UPSCALE_MODEL",)

    def input_types(self):
        d = models_dir(self.dirs.base, "upscale_models")
        names = sorted(f for f in os.listdir(d) if f.endswith(MODEL_EXTENSIONS)) if os.path.isdir(d) else []
        return {"required": {"model_name": (names, {})}}

    def run(self, ctx, model_name):
        return (compact_scale(os.path.join(models_dir(self.dirs.base, "upscale_models"), model_name)),), None


class ImageUpscaleWithModel(Node):
    NAME, DISPLAY_NAME, CATEGORY = "ImageUpscaleWithModel", "Upscale Image (using Model)", "image/upscaling"
    MODULE, V3 = "comfy_extras.nodes_upscale_model", True
    INPUTS = {"required": {"upscale_model": ("UPSCALE_MODEL", {}), "image": ("IMAGE", {})}}

    def run(self, ctx, upscale_model, image):
        return (Images(i.resize((i.width * upscale_model, i.height * upscale_model), Image.NEAREST)
                       for i in image),), None


MODEL_NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
