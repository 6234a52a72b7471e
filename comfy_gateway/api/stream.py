"""Server-sent events for one job: its stored events, live queue position, the final result.

Event ids are `<seq>` for the job's stored events and `<seq>.<n>` for queue-position snapshots
taken after event <seq>; a client reconnecting with Last-Event-ID gets every stored event after
<seq> once, and the current position again (a snapshot, not a repeat).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import orjson

from ..jobs.events import JobEvent
from ..jobs.following import GONE, IDLE
from ..jobs.model import Job
from ..pipeline.runtime import Runtime
from .preview_events import Previews
from .render import render_result

QUEUE_EVENT_MIN_INTERVAL = 0.2  # at most five position updates a second per stream
IDLE_WAIT = 30.0


def parse_last_event_id(value: str | None) -> tuple[int, int]:
    if not value:
        return 0, 0
    head, _, tail = value.strip().partition(".")
    try:
        return max(int(head), 0), max(int(tail), 0) if tail else 0
    except ValueError:
        return 0, 0


async def job_events(runtime: Runtime, job_id: str, last_event_id: str | None,
                     base_url: str) -> AsyncIterator[dict[str, Any]]:
    previews = Previews(runtime.previews, job_id)
    try:
        async for event in _job_events(runtime, job_id, last_event_id, base_url, previews):
            yield event
    finally:
        previews.close()


async def _job_events(runtime: Runtime, job_id: str, last_event_id: str | None,
                      base_url: str, previews: "Previews") -> AsyncIterator[dict[str, Any]]:
    store = runtime.store
    seq, sub = parse_last_event_id(last_event_id)
    last_position: Any = None
    last_queue_emit = 0.0
    # Registered before anything is read: nothing written after that can slip by.
    async with store.events(job_id, after=seq, idle=0.0) as events:
        job: Job | None = None
        while True:
            # idle 0: what has come already, without waiting (the stored events past `seq` go
            # out before any queue position is shown).
            item = await previews.or_next(events)
            if item == GONE:
                return
            if job is None or item != IDLE or events.idle > 0:
                # Read after the event it is rendered with: at least as new as it (a shared
                # store returns snapshots, and a final_result event must carry the final record).
                job = await store.get(job_id)
                if job is None:
                    return
            events.idle, events.queue_changes = 0.0, False
            if isinstance(item, JobEvent):
                seq, sub = item.seq, 0
                yield await _render(runtime, job, item, base_url)
                if item.type == "final_result":
                    return
                continue
            preview = previews.take(job)
            if preview is not None:
                yield preview
                continue
            position, sizes = await runtime.queue_position(job)
            waiting = position["position"] is not None
            snapshot = (position, sizes)
            now = time.monotonic()
            if waiting and snapshot != last_position and now - last_queue_emit >= QUEUE_EVENT_MIN_INTERVAL:
                sub += 1
                last_position, last_queue_emit = snapshot, now
                yield _event(f"{seq}.{sub}", "queue", _data(job, job.status.value, job.message, position, sizes))
                continue
            if waiting and snapshot != last_position:
                # A change came too soon after the last update: wake for job events only, then look again.
                events.idle = QUEUE_EVENT_MIN_INTERVAL - (now - last_queue_emit)
            else:
                events.idle, events.queue_changes = IDLE_WAIT, waiting


def _data(job: Job, status: str, message: str, position: dict[str, Any], sizes: dict[str, int],
          progress: dict[str, Any] | None = None, event_time: float | None = None) -> dict[str, Any]:
    return {
        "request_id": job.id,
        "status": status,
        "message": message,
        "elapsed_time": round((event_time or time.time()) - job.created_at, 3),
        "queue_position": position,
        "queue_info": sizes,
        "progress": progress if progress is not None else (
            job.progress.model_dump() if job.progress and status == "generating" else None),
    }


async def _render(runtime: Runtime, job: Job, event: JobEvent, base_url: str) -> dict[str, Any]:
    position, sizes = await runtime.queue_position(job)
    if event.type == "final_result":
        data = _data(job, "final_result", event.message, position, sizes, event_time=event.time)
        data["result"] = render_result(job, base_url)
        return _event(str(event.seq), "final_result", data)
    data = _data(job, event.status, event.message, position, sizes, event.progress, event.time)
    return _event(str(event.seq), event.type, data)


def _event(id_: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "event": name, "data": orjson.dumps(data).decode()}
