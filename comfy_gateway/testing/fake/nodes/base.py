"""What every fake node shares: the Node base class (INPUT_TYPES, object_info), the IMAGE
type, the context a running node gets, and the exceptions execution cares about.

An IMAGE is a list of Pillow RGB images (ComfyUI's ``[B, H, W, 3]`` tensor).
"""
from __future__ import annotations

import asyncio
from typing import Any

from comfy_gateway.testing.fake.nodes.files import Dirs, SaveCounters

MAX_RESOLUTION = 16384
OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked "
            "before you might have accidentally set the batch_size to a large number.")


class InterruptProcessingException(Exception):
    """Raised at a node boundary (or between FakeSlow steps) after POST /interrupt."""


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (FakeFail exception_type)."""


OutOfMemoryError.__module__ = "torch"


class Images(list):
    """A batch of RGB images, printed like the tensor ComfyUI would hold."""

    def __repr__(self) -> str:
        w, h = self[0].size if self else (0, 0)
        return f"tensor(<IMAGE shape=[{len(self)}, {h}, {w}, 3]>)"

    __str__ = __repr__


def full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def is_link(obj: Any) -> bool:
    return (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], (int, float)))


def input_info(class_inputs: dict, name: str):
    """(type, category, options) of one input in an INPUT_TYPES dict; (None, None, None) if absent."""
    for category in ("required", "optional", "hidden"):
        if name in class_inputs.get(category, {}):
            info = class_inputs[category][name]
            if isinstance(info, str):
                return info, category, {}
            return info[0], category, (info[1] if len(info) > 1 else {})
    return None, None, None


def int_input(default, lo, hi, step=None, **extra):
    """An ``("INT", {...})`` input spec, keys in ComfyUI's order."""
    d = {"default": default, "min": lo, "max": hi}
    if step is not None:
        d["step"] = step
    d.update(extra)
    return ("INT", d)


class NodeContext:
    """What a running node may use besides its inputs."""

    def __init__(self, dirs: Dirs, counters: SaveCounters, progress=None):
        self.dirs, self.counters = dirs, counters
        self.progress = progress  # async (value, total) -> None; raises when interrupted


class Node:
    NAME = ""
    DISPLAY_NAME: str | None = None
    CATEGORY = "image"
    DESCRIPTION = ""
    MODULE = "nodes"
    OUTPUT_NODE = False
    RETURN_TYPES: tuple = ("IMAGE",)
    OUTPUT_TOOLTIPS: tuple | None = None
    V3 = False
    VALIDATE_ARGS: tuple = ()
    INPUTS: dict = {}

    def __init__(self, dirs: Dirs):
        self.dirs = dirs

    def input_types(self) -> dict:
        return self.INPUTS

    def is_changed(self, inputs: dict) -> Any:
        return False

    def run(self, ctx: NodeContext, **kw) -> tuple[tuple, dict | None]:
        raise NotImplementedError

    async def arun(self, ctx: NodeContext, **kw) -> tuple[tuple, dict | None]:
        return await asyncio.to_thread(self.run, ctx, **kw)

    def object_info(self) -> dict:
        it = self.input_types()
        info = {"input": it, "input_order": {k: list(v) for k, v in it.items()},
                "output": list(self.RETURN_TYPES), "output_is_list": [False] * len(self.RETURN_TYPES),
                "output_name": list(self.RETURN_TYPES)}
        if self.V3:
            info["output_tooltips"] = [None] * len(self.RETURN_TYPES)
        info.update(name=self.NAME, display_name=None if self.V3 else (self.DISPLAY_NAME or self.NAME),
                    description=self.DESCRIPTION, python_module=self.MODULE,
                    category=self.CATEGORY, output_node=self.OUTPUT_NODE)
        if self.V3:
            info.update(deprecated=False, experimental=False, api_node=False)
        elif self.OUTPUT_TOOLTIPS:
            info["output_tooltips"] = list(self.OUTPUT_TOOLTIPS)
        return info
