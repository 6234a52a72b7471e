"""What a generation attempt's outcome says about the backend it ran on.

- Out of GPU memory: ask that backend to free memory (POST /free) and run the job once more
  there; a second out-of-memory fails the job with a message that says both happened.
- A fatal GPU error (illegal memory access, device-side assert): the backend leaves the
  rotation until its ComfyUI restarted (comfy/supervisor.py); the job fails with the error.
- Any backend-caused failure counts toward the backend's circuit breaker; a success, or a
  failure that is the workflow's own, ends the row.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from ..comfy.backend import Backend
from ..comfy.errors import BackendError, ExecutionFailed, PromptCancelled
from ..comfy.faults import OutOfMemoryAgain, backend_caused, is_gpu_fatal, is_out_of_memory
from ..comfy.supervisor import Supervisor
from ..jobs.store import JobStore

log = logging.getLogger(__name__)

Attempt = Callable[[], Awaitable[dict[str, Any]]]


class GpuFaults:
    def __init__(self, store: JobStore, supervisors: dict[str, Supervisor],
                 on_oom_retry: Callable[[Backend], None] = lambda b: None,
                 on_trip: Callable[[Backend], None] = lambda b: None):
        self._store = store
        self._supervisors = supervisors  # by backend name
        self._on_oom_retry = on_oom_retry
        self._on_trip = on_trip

    async def run(self, job_id: str, backend: Backend, attempt: Attempt) -> dict[str, Any]:
        try:
            entry = await attempt()
        except PromptCancelled:
            raise
        except Exception as exc:
            self._record(backend, exc)
            if not is_out_of_memory(exc):
                raise
            await self._free(job_id, backend, exc)
            try:
                entry = await attempt()
            except PromptCancelled:
                raise
            except Exception as again:
                self._record(backend, again)
                if is_out_of_memory(again):
                    assert isinstance(again, ExecutionFailed)
                    raise OutOfMemoryAgain(again.data, backend.name) from again
                raise
        self._success(backend)
        return entry

    async def _free(self, job_id: str, backend: Backend, exc: BaseException) -> None:
        log.warning("job %s ran out of GPU memory on %s; freeing its memory and running it once more",
                    job_id, backend.name)
        self._on_oom_retry(backend)
        await self._store.update(job_id, message=f"out of GPU memory on {backend.name}: freeing memory and "
                                                 "running it once more")
        try:
            await backend.http.free()
            # The failed run's entry would stand for the second run if anything read history early.
            await backend.http.delete_history([job_id])
        except BackendError as err:
            log.warning("job %s: could not free memory on %s: %s", job_id, backend.name, err)

    def _record(self, backend: Backend, exc: BaseException) -> None:
        rotation = backend.rotation
        if is_gpu_fatal(exc):
            assert isinstance(exc, ExecutionFailed)
            supervisor = self._supervisors.get(backend.name)
            if supervisor is not None:
                supervisor.latch(str(exc), exc.data.get("prompt_id"))
            return
        if not backend_caused(exc):
            self._success(backend)  # the workflow's fault: the backend itself works
            return
        if rotation.breaker.failure(f"{type(exc).__name__}: {exc}"):
            log.error("backend %s: %d backend-caused failures in a row; out of rotation for %gs (circuit "
                      "breaker)", backend.name, rotation.breaker.failures, rotation.breaker.cooldown)
            self._on_trip(backend)
            rotation.changed()

    @staticmethod
    def _success(backend: Backend) -> None:
        backend.rotation.breaker.ok()
