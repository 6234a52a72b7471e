"""GPU faults a CPU ComfyUI never has, as ComfyUI reports them in `execution_error`:
exception_type is execution.full_type_name of the class (torch.OutOfMemoryError,
torch.AcceleratorError on torch >= 2.8), exception_message is str(ex) followed by a newline
and, for an out-of-memory error only, ComfyUI's TIPS paragraph. POST /free is answered as
server.py answers it (it only sets flags for the next prompt)."""
from __future__ import annotations

from aiohttp import web

from comfy_gateway.testing.fake.knobs import Stats
from comfy_gateway.testing.fake.nodes import OutOfMemoryError

OOM_MESSAGE = ("CUDA out of memory. Tried to allocate 18.00 GiB. GPU 0 has a total capacity of 23.55 GiB of "
               "which 3.06 GiB is free. Of the allocated memory 19.61 GiB is allocated by PyTorch, and 402.53 MiB "
               "is reserved by PyTorch but unallocated.")
ILLEGAL_ACCESS = ("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously "
                  "reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging "
                  "consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable "
                  "device-side assertions.\n")


class AcceleratorError(RuntimeError):
    """Stands in for torch.AcceleratorError (a CUDA error that leaves the context unusable)."""


AcceleratorError.__module__ = "torch"


def injected(kind: str) -> Exception:
    return OutOfMemoryError(OOM_MESSAGE) if kind == "oom" else AcceleratorError(ILLEGAL_ACCESS)


class GpuRoutes:
    def __init__(self, stats: Stats):
        self._stats = stats

    def routes(self) -> list[tuple[str, str, object]]:
        return [("POST", "/free", self.free)]

    async def free(self, request: web.Request) -> web.Response:
        await request.json()  # malformed JSON raises: a 500, as in ComfyUI
        self._stats["free_requests"] += 1
        return web.Response(status=200)
