"""Taking over a job in the generation stage from a process that stopped (its lease ran out).

Our job id IS the ComfyUI prompt_id, so the backend the job was sent to can tell what became of
it: in /history -> settle from the entry; in /queue -> wait for it; unknown -> the prompt never
got there (or the backend forgot it in a restart), and the job is submitted again.

/queue is read before /history: ComfyUI moves a prompt from one to the other in a single step
under its queue lock, so a prompt absent from the queue and then absent from the history was
never there. The other order could miss a prompt finishing in between and run it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..comfy.backend import Backend
from ..comfy.errors import BackendError, PromptLost

log = logging.getLogger(__name__)

POLL_FIRST, POLL_MAX = 0.05, 2.0


def _queued_ids(queue: dict[str, Any]) -> set[str]:
    return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])
            if isinstance(item, list) and len(item) > 1}


async def _where(backend: Backend, prompt_id: str) -> tuple[str, dict[str, Any] | None]:
    """('queued', None), ('done', history entry) or ('unknown', None)."""
    if prompt_id in _queued_ids(await backend.http.queue()):
        return "queued", None
    entry = await backend.http.history(prompt_id)
    return ("done", entry) if entry else ("unknown", None)


async def _ask(backend: Backend, prompt_id: str, lost_after: float) -> tuple[str, dict[str, Any] | None]:
    """_where(), retried with backoff while the backend does not answer, for up to lost_after."""
    since, delay = time.monotonic(), 0.2
    while True:
        try:
            return await _where(backend, prompt_id)
        except BackendError as exc:
            if time.monotonic() - since > lost_after:
                raise BackendError(
                    f"backend {backend.name} unreachable for {time.monotonic() - since:.0f}s while taking "
                    f"over prompt {prompt_id}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def settle_elsewhere(backend: Backend, prompt_id: str, lost_after: float) -> dict[str, Any] | None:
    """The history entry of a prompt another process sent to `backend`, once it has ended;
    None if the backend does not know it (the caller submits it again).

    While it is still queued this polls /history, with backoff: the one place the gateway polls.
    ComfyUI sends a prompt's frames only to the websocket whose clientId the prompt was posted
    with, which belonged to the process that is gone, so no frame will ever tell us it ended.
    """
    state, entry = await _ask(backend, prompt_id, lost_after)
    if state != "queued":
        return entry
    log.info("prompt %s is still queued on %s: following it by its history", prompt_id, backend.name)
    delay = POLL_FIRST
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX)
        state, entry = await _ask(backend, prompt_id, lost_after)
        if state == "done":
            return entry
        if state == "unknown":
            raise PromptLost(f"{backend.name} no longer knows prompt {prompt_id} (did ComfyUI restart?)")
