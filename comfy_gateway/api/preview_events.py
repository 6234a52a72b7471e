"""`preview` events on a job's SSE stream, for a job whose request asked for `"previews": true`.

The image travels inside the event as base64, not as a URL to fetch: a preview is a small
JPEG (ComfyUI sizes it for display), out of date within a second, and kept only in memory
(and briefly in Redis, pipeline/preview_relay.py). A URL would need a store every gateway
process can serve from, an expiry, and a second request per step that often arrives after the
next preview has replaced it; base64 costs a third more bytes on a connection the client
already has open.

These events carry no SSE `id`: they are not part of the job's stored history, so a client
resuming with Last-Event-ID gets the stored events it missed, then the latest preview.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Awaitable

import orjson

from ..jobs.model import Job
from ..pipeline.preview_hub import PreviewEvent, PreviewHub, Subscription


class Previews:
    """One stream's view of one job's previews: subscribed once the job is known to want them."""

    def __init__(self, hub: PreviewHub | None, job_id: str):
        self._hub, self._job_id = hub, job_id
        self._sub: Subscription | None = None

    def latest(self, job: Job) -> PreviewEvent | None:
        """The preview not yet taken (the latest one), if the job asked for previews."""
        if self._hub is None or not job.request.get("previews") or job.status.terminal:
            return None
        if self._sub is None:
            self._sub = self._hub.subscribe(self._job_id)
        return self._sub.take()

    def take(self, job: Job) -> dict[str, Any] | None:
        """The preview not yet sent (the latest one), as an SSE event; None if there is none."""
        event = self.latest(job)
        if event is None:
            return None
        p = event.preview
        data = {"request_id": job.id, "status": job.status.value, "message": job.message,
                "node": p.node, "node_type": p.node_type, "step": p.value,
                "steps": p.max, "n": event.n, "time": event.time,
                "image": {"content_type": p.mime, "base64": base64.b64encode(p.image).decode()}}
        return {"event": "preview", "data": orjson.dumps(data).decode()}

    async def or_wait(self, wait: Awaitable[None]) -> None:
        """Await `wait` (for the job's next event), returning early when a preview arrives
        (stopping that wait loses nothing: the stream reads the job's events next)."""
        if self._sub is None:
            await wait
            return
        event_wait = asyncio.ensure_future(wait)
        preview_wait = asyncio.ensure_future(self._sub.wait())
        try:
            await asyncio.wait({event_wait, preview_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (event_wait, preview_wait):
                task.cancel()
            await asyncio.gather(event_wait, preview_wait, return_exceptions=True)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None
