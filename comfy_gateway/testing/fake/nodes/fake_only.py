"""Nodes only the fake has, to make on demand what a real ComfyUI does only by accident:
a slow node with progress, a node that raises, a node writing a huge output file.
Their python_module stays "fake_comfyui", as object_info has always reported it."""
from __future__ import annotations

import asyncio
import mimetypes
import os

from PIL import Image

from comfy_gateway.testing.fake.nodes.base import Images, Node, OutOfMemoryError, int_input


def _black(images):
    return images if images else Images([Image.new("RGB", (64, 64))])


class FakeSlow(Node):
    """Sleeps ``seconds`` in ``steps`` steps, reporting progress after each; passes images on."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeSlow", "Fake Slow", "testing", "fake_comfyui"
    INPUTS = {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 86400.0, "step": 0.01}),
                           "steps": int_input(1, 1, 1_000_000)},
              "optional": {"images": ("IMAGE",)}}

    async def arun(self, ctx, seconds=1.0, steps=1, images=None):
        per = seconds / steps
        for i in range(1, steps + 1):
            if per > 0:
                await asyncio.sleep(per)
            await ctx.progress(i, steps)
        return (_black(images),), None


class FakeFail(Node):
    """Raises ``exception_type(message)`` when run: an execution_error."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeFail", "Fake Fail", "testing", "fake_comfyui"
    ERRORS = {"RuntimeError": RuntimeError, "ValueError": ValueError,
              "torch.OutOfMemoryError": OutOfMemoryError}
    INPUTS = {"required": {"message": ("STRING", {"default": "FakeFail: intentional failure"})},
              "optional": {"exception_type": (list(ERRORS),), "images": ("IMAGE",)}}

    def run(self, ctx, message="FakeFail: intentional failure", exception_type="RuntimeError", images=None):
        raise self.ERRORS[exception_type](message)


class FakeBigOutput(Node):
    """Output node writing a ``bytes``-long file in 1 MiB chunks, reported under ``output_key``."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeBigOutput", "Fake Big Output", "testing", "fake_comfyui"
    OUTPUT_NODE, RETURN_TYPES = True, ()
    INPUTS = {"required": {"bytes": int_input(1 << 20, 0, 1 << 50)},
              "optional": {"filename_prefix": ("STRING", {"default": "ComfyUI_big"}),
                           "output_key": ("STRING", {"default": "gifs"}),
                           "format": ("STRING", {"default": "video/mp4"}), "images": ("IMAGE",)}}
    CHUNK = bytes(range(256)) * 4096

    def run(self, ctx, bytes, filename_prefix="ComfyUI_big", output_key="gifs", format="video/mp4", images=None):
        ext = mimetypes.guess_extension(format) or ".bin"
        full, filename, counter, subfolder = ctx.counters.save_path(filename_prefix, self.dirs.output)
        file = f"{filename}_{counter:05}_{ext}"
        left = bytes
        with open(os.path.join(full, file), "wb") as f:
            while left > 0:
                n = min(left, len(self.CHUNK))
                f.write(self.CHUNK[:n])
                left -= n
        ctx.counters.advance(full, filename, counter + 1)
        return (), {output_key: [{"filename": file, "subfolder": subfolder, "type": "output", "format": format}]}
