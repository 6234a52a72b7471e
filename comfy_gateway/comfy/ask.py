"""Asking a ComfyUI what became of one of our prompts, instead of guessing.

Our job id IS the prompt_id, so /queue and /history answer for it. /queue is read before
/history: ComfyUI moves a prompt from one to the other in a single step under its queue lock,
so a prompt absent from the queue and then absent from the history was never there (or was
removed: cleared, deleted, a restart). The other order could miss a prompt finishing in between.

The retry loops use tenacity: each asks again with jittered exponential backoff while ComfyUI
does not answer, until the caller's deadline; what the deadline is depends on the question.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from .errors import BackendError
from .http import ComfyHTTP


class Where(str, Enum):
    queued = "queued"  # pending or running
    done = "done"  # in /history (ended one way or another)
    unknown = "unknown"  # in neither


def queued_ids(queue: dict[str, Any]) -> set[str]:
    """Prompt ids pending or running in a /queue answer (items: [number, id, prompt, extra, outputs])."""
    return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])
            if isinstance(item, list) and len(item) > 1}


async def where(http: ComfyHTTP, prompt_id: str) -> tuple[Where, dict[str, Any] | None]:
    """One look: (queued, None), (done, history entry) or (unknown, None). Raises BackendError."""
    if prompt_id in queued_ids(await http.queue()):
        return Where.queued, None
    entry = await http.history(prompt_id)
    return (Where.done, entry) if entry else (Where.unknown, None)


def seconds_until(deadline: float | None, fallback: float) -> float:
    """Seconds left before an epoch deadline (at least a moment), or `fallback` without one."""
    if deadline is None:
        return fallback
    return max(deadline - time.time(), 0.1)


def asking(budget: float, first: float = 0.05, most: float = 2.0) -> AsyncRetrying:
    """Retry on BackendError (no answer, 5xx) for up to `budget` seconds, then re-raise it."""
    return AsyncRetrying(
        retry=retry_if_exception_type(BackendError), stop=stop_after_delay(budget),
        wait=wait_exponential_jitter(multiplier=first, max=most, jitter=first), reraise=True)


async def ask(http: ComfyHTTP, prompt_id: str, budget: float) -> tuple[Where, dict[str, Any] | None]:
    """where(), asked again while ComfyUI does not answer, for up to `budget` seconds."""
    async for attempt in asking(budget):
        with attempt:
            return await where(http, prompt_id)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
