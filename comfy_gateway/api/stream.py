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
from ..jobs.model import Job
from ..pipeline.queue_places import Place
from ..pipeline.runtime import Runtime
from .preview_events import Previews
from .queue_watch import queue_watch
from .render import render_result
from .shared_reads import shared_reads

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
    # The streams of one job share their waits, reads and final render (shared_reads.py), and
    # the streams of waiting jobs one watch of the queues (queue_watch.py): thousands of
    # followers cost about what a few do.
    shared, watch = shared_reads(runtime), queue_watch(runtime)
    seq, sub = parse_last_event_id(last_event_id)
    last_position: Any = None
    last_queue_emit = 0.0
    with watch.follow(job_id) as follower:
        while True:
            events, job = await shared.read(job_id, seq)
            if job is None:
                return
            for event in events:
                seq, sub = event.seq, 0
                yield await _render(runtime, job, event, base_url, await watch.place(follower, job))
                if event.type == "final_result":
                    return
            preview = previews.take(job)
            if preview is not None:
                yield preview
                continue
            position, sizes = snapshot = await watch.place(follower, job)
            waiting = position["position"] is not None
            now = time.monotonic()
            if waiting and snapshot != last_position and now - last_queue_emit >= QUEUE_EVENT_MIN_INTERVAL:
                sub += 1
                last_position, last_queue_emit = snapshot, now
                yield _event(f"{seq}.{sub}", "queue", _data(job, job.status.value, job.message, position, sizes))
                continue
            if waiting and snapshot != last_position:
                # A change came too soon after the last update: wake for job events only, then look again.
                await previews.or_wait(shared.wait(job_id, seq, QUEUE_EVENT_MIN_INTERVAL - (now - last_queue_emit)))
            else:
                await previews.or_wait(shared.wait(job_id, seq, IDLE_WAIT, follower.changed if waiting else None))


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


async def _render(runtime: Runtime, job: Job, event: JobEvent, base_url: str, place: Place) -> dict[str, Any]:
    position, sizes = place
    if event.type == "final_result":
        def final() -> dict[str, Any]:
            data = _data(job, "final_result", event.message, position, sizes, event_time=event.time)
            data["result"] = render_result(job, base_url)
            return _event(str(event.seq), "final_result", data)
        return shared_reads(runtime).final(job, event, base_url, final)
    data = _data(job, event.status, event.message, position, sizes, event.progress, event.time)
    return _event(str(event.seq), event.type, data)


def _event(id_: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "event": name, "data": orjson.dumps(data).decode()}
