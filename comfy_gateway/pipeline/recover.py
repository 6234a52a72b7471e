"""Taking over a job in the generation stage from a process that stopped (its lease ran out).

Our job id IS the ComfyUI prompt_id, so the backend the job was sent to can tell what became of
it (comfy/ask.py): in /history -> settle from the entry; in /queue -> wait for it; unknown -> the
prompt never got there (or the backend forgot it in a restart), and the job is submitted again.
"""

from __future__ import annotations

import logging
from typing import Any

from tenacity import AsyncRetrying, retry_if_result, stop_never, wait_exponential

from ..comfy.ask import Where, ask
from ..comfy.backend import Backend
from ..comfy.errors import BackendError, PromptLost

log = logging.getLogger(__name__)

POLL_FIRST, POLL_MAX = 0.05, 2.0


async def settle_elsewhere(backend: Backend, prompt_id: str, lost_after: float) -> dict[str, Any] | None:
    """The history entry of a prompt another process sent to `backend`, once it has ended;
    None if the backend does not know it (the caller submits it again). A backend that does not
    answer for `lost_after` seconds raises BackendError.

    While it is still queued this polls, with backoff: the one place the gateway polls. ComfyUI
    sends a prompt's frames only to the websocket whose clientId the prompt was posted with,
    which belonged to the process that is gone, so no frame will ever tell us it ended. (The
    job's time limit ends the wait: the job is then withdrawn from ComfyUI and leaves its queue.)
    """
    try:
        state, entry = await ask(backend.http, prompt_id, lost_after)
        if state is not Where.queued:
            return entry
        log.info("prompt %s is still queued on %s: following it by its history", prompt_id, backend.name)
        polling = AsyncRetrying(retry=retry_if_result(lambda found: found[0] is Where.queued), stop=stop_never,
                                wait=wait_exponential(multiplier=POLL_FIRST, max=POLL_MAX))
        state, entry = await polling(ask, backend.http, prompt_id, lost_after)
    except BackendError as exc:
        raise BackendError(f"backend {backend.name} unreachable for {lost_after:g}s while taking over "
                           f"prompt {prompt_id}: {exc}") from exc
    if state is Where.unknown:
        raise PromptLost(f"{backend.name} no longer knows prompt {prompt_id} (did ComfyUI restart?)")
    return entry
