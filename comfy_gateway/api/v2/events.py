"""GET /api/v2/jobs/{id}/events: the job's live events as the v2 contract names them: `status`
(on each change of status or queue position), `progress` (complete snapshots), `output` (each
output, once stored) and a last `status` with the terminal state, after which the stream ends.
Outputs come before that last status: the SDK stops reading at a terminal status. No ids:
the v2 stream has no cursor, a reconnecting client starts from a fresh snapshot."""

from __future__ import annotations

import base64
import time
from typing import Any, AsyncIterator

import orjson
from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from ...jobs.model import Job, Progress
from ...pipeline.runtime import Runtime
from ...pipeline.preview_hub import PreviewEvent
from ..deps import runtime_of
from ..preview_events import Previews
from ..queue_watch import queue_watch
from ..shared_reads import shared_reads
from .errors import V2Route
from .jobs import job_or_404, render
from .view import TERMINAL, progress_of

router = APIRouter(route_class=V2Route, tags=["v2 jobs"])
IDLE_WAIT = 30.0
QUEUE_EVENT_MIN_INTERVAL = 0.2  # at most five position updates a second per stream


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "data": orjson.dumps(data).decode()}


async def v2_events(runtime: Runtime, request: Request, job_id: str) -> AsyncIterator[dict[str, Any]]:
    previews = Previews(runtime.previews, job_id)
    try:
        async for event in _v2_events(runtime, request, job_id, previews):
            yield event
    finally:
        previews.close()


def _preview_event(event: PreviewEvent) -> dict[str, Any]:
    p = event.preview
    return _event("preview", {"node_id": p.node or "", "content_type": p.mime,
                              "data_base64": base64.b64encode(p.image).decode()})


async def _v2_events(runtime: Runtime, request: Request, job_id: str,
                     previews: Previews) -> AsyncIterator[dict[str, Any]]:
    """A job asking for previews (`gateway: {"previews": true}`) also gets `preview` events:
    the latest step's image only, never stored (see api/preview_events.py)."""
    # Shared with every other stream of the job (see api/stream.py): waits, reads, queue places.
    shared, watch = shared_reads(runtime), queue_watch(runtime)
    seen, _ = await shared.read(job_id, 0)
    seq = seen[-1].seq if seen else 0
    last: tuple[str, int | None] | None = None
    last_sent = 0.0
    with watch.follow(job_id) as follower:
        while True:
            events, job = await shared.read(job_id, seq)
            if job is None:
                return
            progress = []
            for event in events:
                seq = event.seq
                if event.type == "progress" and event.progress:
                    progress.append(_event("progress", progress_of(Progress.model_validate(event.progress))))
            place, _ = await watch.place(follower, job)
            view = await render(runtime, job, request, queue=place)
            if view["status"] in TERMINAL:
                for out in view["outputs"]:
                    yield _event("output", out)
                yield _event("status", {"status": view["status"], "queue_position": None})
                return
            now = (view["status"], view["queue_position"])
            if now != last:
                first = last is None
                last, last_sent = now, time.monotonic()
                yield _event("status", {"status": now[0], "queue_position": now[1]})
                if first and now[0] == "running" and view["progress"]:
                    yield _event("progress", view["progress"])
            for frame in progress:  # after the status they may have changed
                yield frame
            if (shown := previews.latest(job)) is not None:
                yield _preview_event(shown)
            # While it waits, a change of its place wakes the stream, but at most so often.
            calm = time.monotonic() - last_sent >= QUEUE_EVENT_MIN_INTERVAL
            queued = now[0] == "queued"
            await previews.or_wait(shared.wait(job_id, seq, IDLE_WAIT if calm or not queued else QUEUE_EVENT_MIN_INTERVAL,
                                               follower.changed if queued and calm else None))


@router.get("/jobs/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}},
            summary="The job's live events (status, progress, output), to its terminal status")
async def events(request: Request, job_id: str) -> EventSourceResponse:
    runtime = runtime_of(request)
    job: Job = await job_or_404(request, job_id)
    return EventSourceResponse(v2_events(runtime, request, job.id), ping=runtime.settings.sse_ping_seconds)
