"""The fake ComfyUI's nodes: the ported standard ones, the fake-only ones, and the base
class, files and naming they share. ``make_nodes`` builds the set one server uses."""
from __future__ import annotations

from comfy_gateway.testing.fake.nodes.base import (
    MAX_RESOLUTION, OOM_TIPS, Images, InterruptProcessingException, Node, NodeContext, OutOfMemoryError,
    full_type_name, input_info, int_input, is_link,
)
from comfy_gateway.testing.fake.nodes.fake_only import FakeBigOutput, FakeFail, FakeSlow
from comfy_gateway.testing.fake.nodes.files import Dirs, SaveCounters
from comfy_gateway.testing.fake.nodes.text import PreviewAny, PrimitiveString, RegexExtract
from comfy_gateway.testing.fake.nodes.standard import (
    EmptyImage, EmptyLatentImage, ImageBlend, ImageBlur, ImageInvert, ImageScale, LoadImage, PreviewImage, SaveImage,
)

# Order matters: it is the key order of GET /object_info.
NODE_CLASSES = [EmptyImage, EmptyLatentImage, LoadImage, ImageInvert, ImageScale, ImageBlur, ImageBlend,
                SaveImage, PreviewImage, PrimitiveString, RegexExtract, PreviewAny, FakeSlow, FakeFail, FakeBigOutput]


def make_nodes(dirs: Dirs) -> dict[str, Node]:
    return {cls.NAME: cls(dirs) for cls in NODE_CLASSES}


__all__ = [
    "MAX_RESOLUTION", "OOM_TIPS", "NODE_CLASSES", "Dirs", "EmptyImage", "EmptyLatentImage", "FakeBigOutput",
    "FakeFail", "FakeSlow", "ImageBlend", "ImageBlur", "ImageInvert", "ImageScale", "Images",
    "InterruptProcessingException", "LoadImage", "Node", "NodeContext", "OutOfMemoryError", "PreviewImage",
    "SaveCounters", "SaveImage", "full_type_name", "input_info", "int_input", "is_link", "make_nodes",
]
