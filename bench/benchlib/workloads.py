"""The workflows the benchmark sends: EmptyImage -> SaveImage for ComfyUI, FakeBigOutput for the fake."""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import orjson

_colors = itertools.count(random.randrange(0, 0xFFFFFF))


def next_color() -> int:
    """A colour no earlier prompt of this run used, so ComfyUI never answers from its cache."""
    return next(_colors) % 0x1000000


def empty_save(prefix: str, size: int = 512) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": size, "height": size, "batch_size": 1, "color": next_color()}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def direct_workflow(size: int) -> dict[str, Any]:
    # The gateway turns the prefix "bench" into "<job id>/bench": one new subfolder per job.
    # The direct client does the same, so ComfyUI does identical work for both (SaveImage lists
    # the target folder to number its files: one shared folder would slow down as it fills).
    return empty_save(f"{uuid.uuid4()}/bench", size)


def gateway_body(workflow: dict[str, Any]) -> bytes:
    return orjson.dumps({"input": {"workflow_json": workflow}})


def padded(workflow: dict[str, Any], extra_nodes: int) -> dict[str, Any]:
    """The workflow plus N unconnected EmptyImage nodes (ComfyUI runs only what leads to an
    output): a bigger request, as real workflows are, for the same work."""
    for i in range(extra_nodes):
        workflow[f"pad{i}"] = {"class_type": "EmptyImage",
                               "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i}}
    return workflow


def big_output(nbytes: int, prefix: str = "big") -> dict[str, Any]:
    return {"1": {"class_type": "FakeBigOutput",
                  "inputs": {"bytes": nbytes, "filename_prefix": prefix, "output_key": "gifs"}}}
