"""WARMUP_WORKFLOW: the API-format workflow each backend runs before it takes jobs (loads the
models into GPU memory, compiles kernels), read once at start."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from .backend import Backend


def load_workflow(path: Path) -> dict[str, Any]:
    """The workflow in the file; ValueError naming the file and what is wrong with it."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"WARMUP_WORKFLOW {path}: cannot be read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"WARMUP_WORKFLOW {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(n, dict) and isinstance(n.get("class_type"), str) for n in data.values()):
        raise ValueError(f"WARMUP_WORKFLOW {path}: not an API-format workflow (an object of nodes, each with "
                         "class_type and inputs; ComfyUI's 'Export (API)')")
    return data


async def run_warmup(backend: Backend, workflow: dict[str, Any], timeout: float) -> float:
    """Run the workflow once on the backend under a fresh prompt id; its duration in seconds.
    Raises what the run raises (a failed node, a lost backend), or TimeoutError."""
    prompt_id = str(uuid.uuid4())
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await backend.run(prompt_id, workflow)
    except TimeoutError:
        await backend.cancel(prompt_id)
        raise TimeoutError(f"warm-up did not finish within {timeout:g}s (WARMUP_TIMEOUT)") from None
    return time.monotonic() - started
