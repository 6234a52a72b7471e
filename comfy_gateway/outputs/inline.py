"""Base64 outputs in the result, for clients that want everything in one round trip.

Bounded by INLINE_MAX_BYTES per job (counted before encoding): outputs are inlined in order
while they fit; the others keep only their URL, and the job says which and why. The job still
completes: the cap protects the result (and the store holding it), not the outputs.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from ..jobs.model import OutputFile


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


async def inline_outputs(files: list[tuple[OutputFile, Path]], cap: int) -> list[str]:
    """Set `base64` on each output that fits under the cap; return a warning per one that did not."""
    warnings: list[str] = []
    used = 0
    for out, path in files:
        size = out.size_bytes if out.size_bytes is not None else path.stat().st_size
        if used + size > cap:
            warnings.append(
                f"{out.filename}: not inlined as base64: {_mib(used + size)} in all would pass "
                f"INLINE_MAX_BYTES ({_mib(cap)}); fetch it from its url")
            continue
        data = await asyncio.to_thread(path.read_bytes)
        out.base64 = base64.b64encode(data).decode()
        used += size
    return warnings
