"""A gateway's runtime in the test's own process, over a store the test made (often one with a
fault or a count injected, a timing no real store can be asked for), in front of a ComfyUI (the
fake, or the real one)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

from comfy_gateway.jobs.store import JobStore
from comfy_gateway.pipeline.runtime import Runtime
from comfy_gateway.settings import Settings


@contextlib.asynccontextmanager
async def runtime_over(store: JobStore, comfyui_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Runtime]:
    """A started runtime over `store` (closed with it), outputs under `tmp_path`; `settings`
    override the defaults. The caller wipes a Redis store's prefix."""
    runtime = Runtime(Settings(comfyui_api_base=comfyui_url, output_dir=tmp_path / "out",  # type: ignore[call-arg]
                               api_cache="redis" if store.shared else "memory", _env_file=None, **settings),
                      store=store)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
