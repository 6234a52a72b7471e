"""`cancel_on_disconnect`: a /generate/sync or /generate/stream caller that goes away before
its job ends can have the job cancelled (by default the job keeps running and its result stays
at /result/{id}). The disconnect is ASGI's `http.disconnect`, which the server sends as soon as
the client's connection closes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi import Request

from ..pipeline.cancel import AlreadyEnded
from ..pipeline.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
_cancels: set[asyncio.Task[None]] = set()  # detached cancels, held until done


async def _disconnected(request: Request) -> None:
    # The body has been read: the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def cancel_soon(runtime: Runtime, job_id: str) -> None:
    """Cancel the job in a task of its own (the caller may itself be being cancelled)."""
    async def cancel() -> None:
        try:
            await runtime.cancel(job_id)
            log.info("job %s cancelled: its caller disconnected (cancel_on_disconnect)", job_id)
        except (KeyError, AlreadyEnded):
            pass
        except Exception:  # noqa: BLE001
            log.exception("job %s: cancel on disconnect failed", job_id)

    task = asyncio.get_running_loop().create_task(cancel())
    _cancels.add(task)
    task.add_done_callback(_cancels.discard)


async def unless_disconnected(request: Request, runtime: Runtime, job_id: str, wait: Awaitable[T]) -> T | None:
    """Await `wait`; if the caller disconnects first, cancel the job and return None."""
    waiting = asyncio.ensure_future(wait)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result()
        cancel_soon(runtime, job_id)
        return None
    finally:
        for task in (waiting, gone):
            task.cancel()
        await asyncio.gather(waiting, gone, return_exceptions=True)


async def cancel_if_abandoned(runtime: Runtime, job_id: str,
                              events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Pass a job's SSE events through; cancel the job if the stream stops before its final
    result (the server stops it when the client disconnects)."""
    finished = False
    try:
        async for event in events:
            yield event
            if event.get("event") == "final_result":
                finished = True
    finally:
        if not finished:
            cancel_soon(runtime, job_id)
