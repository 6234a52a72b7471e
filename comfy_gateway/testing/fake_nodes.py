"""Kept so that existing imports keep working: the fake ComfyUI's nodes, prompt validation and
execution order now live in the ``comfy_gateway.testing.fake`` package (``fake.nodes``,
``fake.validation``, ``fake.graph``). New code should import from there."""
from __future__ import annotations

from comfy_gateway.testing.fake.executor import format_value
from comfy_gateway.testing.fake.graph import ExecutionList, get_input_data, node_signatures
from comfy_gateway.testing.fake.nodes import (
    MAX_RESOLUTION, NODE_CLASSES, OOM_TIPS, Dirs, EmptyImage, EmptyLatentImage, FakeBigOutput, FakeFail, FakeSlow,
    ImageBlend, ImageBlur, ImageInvert, Images, ImageScale, InterruptProcessingException, LoadImage, Node,
    NodeContext, OutOfMemoryError, PreviewImage, SaveCounters, SaveImage, full_type_name, is_link, make_nodes,
)
from comfy_gateway.testing.fake.validation import validate_prompt

__all__ = [
    "MAX_RESOLUTION", "NODE_CLASSES", "OOM_TIPS", "Dirs", "EmptyImage", "EmptyLatentImage", "ExecutionList",
    "FakeBigOutput", "FakeFail", "FakeSlow", "ImageBlend", "ImageBlur", "ImageInvert", "ImageScale", "Images",
    "InterruptProcessingException", "LoadImage", "Node", "NodeContext", "OutOfMemoryError", "PreviewImage",
    "SaveCounters", "SaveImage", "format_value", "full_type_name", "get_input_data", "is_link", "make_nodes",
    "node_signatures", "validate_prompt",
]
