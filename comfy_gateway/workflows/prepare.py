"""Prepare a client's API-format workflow for one job."""

from __future__ import annotations

import copy
from typing import Any


def prepare_workflow(workflow: dict[str, Any], job_id: str) -> dict[str, Any]:
    """A copy of the workflow whose every `filename_prefix` starts with the job id.

    Each job then writes into its own subfolder, its files never clash with another job's, and
    ComfyUI cannot answer a repeated prompt from cache with an older job's filenames.
    """
    prompt = copy.deepcopy(workflow)
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
            prefix = inputs["filename_prefix"].lstrip("/") or "ComfyUI"
            inputs["filename_prefix"] = f"{job_id}/{prefix}"
    return prompt
