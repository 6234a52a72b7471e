"""Turning any exception a stage raises into the error a client reads on the job."""

from __future__ import annotations

import logging

from ..comfy.errors import BackendError, ExecutionFailed, ExecutionInterrupted, PromptLost, PromptRejected
from ..inputs.errors import InputError
from ..jobs.model import JobError, JobStatus
from ..jobs.sealing import SealError
from ..jobs.store import JobStore
from ..outputs.errors import StorageError
from ..workflows.modifier import ModifierError
from ..workflows.params import InvalidModifications
from ..workflows.registry import UnknownModifier

log = logging.getLogger(__name__)


def job_error(exc: BaseException) -> JobError:
    if isinstance(exc, InputError):
        return JobError(kind="input", type=exc.type, message=str(exc), details=exc.details())
    if isinstance(exc, ModifierError):
        return JobError(kind="modifier", type=exc.type, message=str(exc), details=exc.details)
    if isinstance(exc, InvalidModifications):
        return JobError(kind="modifier", type="invalid_modifications", message=str(exc),
                        details={"modifier": exc.modifier, "errors": exc.errors})
    if isinstance(exc, UnknownModifier):
        return JobError(kind="modifier", type="unknown_modifier", message=str(exc),
                        details={"modifier": exc.name, "known": exc.known})
    if isinstance(exc, PromptRejected):
        return JobError(
            kind="rejected", type=str(exc.error.get("type") or "invalid_prompt"),
            message=f"ComfyUI rejected the workflow: {exc.error.get('message', '')}".rstrip(": "),
            node_errors=exc.node_errors, details=exc.error,
        )
    if isinstance(exc, ExecutionFailed):
        return JobError(kind="execution", type="execution_error", message=f"ComfyUI failed while running: {exc}", details=exc.data)
    if isinstance(exc, ExecutionInterrupted):
        # The gateway's own cancels and time limits end the job before they interrupt, so an
        # interrupt that reaches here came from someone else (Cancel in ComfyUI, a /interrupt).
        return JobError(kind="interrupted", type="execution_interrupted", details=exc.data,
                        message=f"ComfyUI {exc}: interrupted there by someone else, not by this gateway")
    if isinstance(exc, PromptLost):
        return JobError(kind="backend", type="prompt_lost", message=str(exc))
    if isinstance(exc, StorageError):
        return JobError(kind="storage", type=exc.type, message=exc.message, details=exc.details or None)
    if isinstance(exc, SealError):
        return JobError(kind="storage", type="credentials_unavailable", message=str(exc))
    if isinstance(exc, BackendError):
        return JobError(kind="backend", type="backend_error", message=str(exc))
    return JobError(kind="internal", type="internal_error", message=f"{type(exc).__name__}: {exc}")


async def fail_job(store: JobStore, job_id: str, exc: BaseException) -> None:
    """End the job as failed with the error; never raises (a worker must survive it)."""
    err = job_error(exc)
    if err.type in ("internal_error", "modifier_error"):  # our code or an operator's: keep the traceback
        log.error("job %s failed: %s", job_id, err.message, exc_info=exc)
    else:
        log.info("job %s failed: %s", job_id, err.message)
    try:
        await store.update(job_id, status=JobStatus.failed, message=err.message, error=err)
    except Exception:  # noqa: BLE001
        log.exception("could not record the failure of job %s", job_id)
