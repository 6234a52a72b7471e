"""Webhooks for the job events a client asked for besides the final result (`webhook.events`:
`status`, `progress`), signed like the final one (outputs/webhooks.py).

At most one is in flight per job and they go out in order. One that cannot go out because the
previous is still on its way is replaced by the next one (a receiver slower than the job sees
fewer events, never a backlog), and none is retried: the next one says more. The final
webhook is sent only once the job's last event delivery has ended, so it always comes last,
and it keeps its retries.

Followed by the process that accepted the job, through the store's events (so with Redis,
whichever process runs the job).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson

from ..jobs.events import JobEvent
from ..jobs.following import GONE, Tick
from ..jobs.model import Job, JobStatus
from ..jobs.store import JobStore
from ..net.guard import UrlRefused
from ..net.precheck import precheck_url
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

IDLE_WAIT = 30.0


class ProgressWebhooks:
    def __init__(self, sender: WebhookSender, store: JobStore):
        self._sender = sender
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.sent = 0
        self.dropped = 0

    def on_created(self, job: Job, previous: JobStatus | None) -> None:
        """A store listener: start following a new job that asked for event webhooks."""
        if previous is not None:
            return
        hook = job.request.get("webhook") or {}
        wanted = set(hook.get("events") or ())
        target = self._sender.target(job.request)
        if not wanted or target is None or not self._sender.can_sign:
            return
        url, extra = target
        task = asyncio.get_running_loop().create_task(self._follow(job.id, url, extra, wanted),
                                                      name=f"event-webhooks:{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def before_final(self, job_id: str) -> None:
        """Return once no event webhook of the job can still be sent (the final one goes next)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait({task}, timeout=self._sender.timeout + 5)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _follow(self, job_id: str, url: str, extra: dict[str, Any], wanted: set[str]) -> None:
        try:
            await precheck_url(url, self._sender.network_policy, what="webhook.url")
        except UrlRefused as exc:
            log.info("event webhooks of job %s not sent: %s", job_id, exc)
            return
        pending: JobEvent | None = None
        sending: asyncio.Task[None] | None = None
        # One read at a time, kept while a delivery ends (the next event is read meanwhile).
        reading: asyncio.Future[JobEvent | Tick | None] | None = None
        ended = False
        events = self._store.events(job_id, idle=IDLE_WAIT)
        try:
            while not ended:
                if reading is None:
                    reading = asyncio.ensure_future(anext(events, None))
                waits = {reading} | ({sending} if sending is not None else set())
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if sending is not None and sending.done():
                    sending = None
                if reading.done():
                    item, reading = reading.result(), None
                    if item is None or item == GONE:
                        return  # expired, or gone from a shared store
                    if isinstance(item, JobEvent):
                        if item.type == "final_result":
                            ended = True
                        elif item.type in wanted:
                            if pending is not None:
                                self.dropped += 1
                            pending = item
                if sending is None and pending is not None:
                    sending = asyncio.ensure_future(self._send(job_id, url, extra, pending))
                    pending = None
            # The job ended: the delivery in flight finishes (the final webhook waits for it);
            # an event still waiting behind it is dropped, the final webhook says more.
            if sending is not None:
                await sending
            if pending is not None:
                self.dropped += 1
        finally:
            if reading is not None:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
            events.close()

    async def _send(self, job_id: str, url: str, extra: dict[str, Any], event: JobEvent) -> None:
        body = {"type": f"job.{event.type}", "id": job_id, "seq": event.seq, "status": event.status,
                "message": event.message, "progress": event.progress, "time": event.time,
                "extra_params": extra}
        status, error, _ = await self._sender.attempt(url, f"msg_{uuid.uuid4().hex}", orjson.dumps(body))
        self.sent += 1
        if status is None or not 200 <= status < 300:
            log.info("event webhook %d of job %s not delivered (not retried): %s", event.seq, job_id, error)
