"""Which failures are the GPU's or the backend's, not the workflow's.

ComfyUI reports a node's exception in `execution_error` as `exception_type` (the class's full
name, execution.full_type_name) and `exception_message` (str(ex), plus for an out-of-memory
error its "TIPS" paragraph). On torch 2.x, running out of GPU memory is
`torch.OutOfMemoryError` (what torch.cuda.OutOfMemoryError names now); CUDA faults that leave
the context unusable (illegal memory access, device-side assert, launch failures) are
`torch.AcceleratorError` on torch >= 2.8 and a plain RuntimeError("CUDA error: ...") before.
"""

from __future__ import annotations

from .errors import BackendError, ExecutionFailed, PromptLost

OOM_TYPES = {"torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"}
OOM_PHRASES = ("out of memory", "ran out of memory on your gpu")
# A CUDA error after which every later kernel fails until the process restarts.
FATAL_PHRASES = (
    "illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address",
    "illegal instruction", "an uncorrectable ecc error", "cuda error: unknown error",
    "cublas_status_execution_failed", "cudnn_status_execution_failed", "cuda error: launch failure",
)


def _details(exc: BaseException) -> tuple[str, str]:
    data = exc.data if isinstance(exc, ExecutionFailed) else {}
    return str(data.get("exception_type") or ""), str(data.get("exception_message") or "").lower()


def is_out_of_memory(exc: BaseException) -> bool:
    if not isinstance(exc, ExecutionFailed):
        return False
    kind, message = _details(exc)
    if kind in OOM_TYPES:
        return True
    # Older torch: RuntimeError("CUDA out of memory..."); a fatal CUDA error may mention memory too.
    return any(p in message for p in OOM_PHRASES) and not is_gpu_fatal(exc)


def is_gpu_fatal(exc: BaseException) -> bool:
    if not isinstance(exc, ExecutionFailed):
        return False
    kind, message = _details(exc)
    if kind in OOM_TYPES:
        return False
    return any(p in message for p in FATAL_PHRASES) and ("cuda" in message or kind == "torch.AcceleratorError")


def backend_caused(exc: BaseException) -> bool:
    """The backend's fault (counts toward its circuit breaker), not the workflow's."""
    return isinstance(exc, (BackendError, PromptLost)) or is_out_of_memory(exc) or is_gpu_fatal(exc)


class OutOfMemoryAgain(ExecutionFailed):
    """Out of GPU memory twice: once, then again after the gateway freed memory and retried."""

    def __init__(self, data: dict, backend: str):
        super().__init__(data)
        self.args = (f"out of GPU memory on {backend} twice: the gateway asked it to unload models and free "
                     f"memory (POST /free) and ran the job once more, and it ran out again. "
                     f"{super().__str__()}",)
