"""Live previews from the backends' websockets to the clients following a job.

A preview is never stored in the job's event history: only the latest one per job is kept
here (so a follower who arrives late gets that one), and each subscriber holds at most one
preview it has not read yet. Publishing replaces that one instead of queueing behind it, and
never awaits: a slow client loses stale previews, it never slows the backend's websocket, nor
another client.

Local to a process; with a shared Redis, preview_relay.py carries previews to readers in the
other processes (`relay`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..comfy.previews import Preview
from ..comfy.tracker import PreviewCallback

if TYPE_CHECKING:
    from .preview_relay import RedisPreviewRelay


MAX_JOBS = 10_000  # latest previews kept at most (one per job)


@dataclass(frozen=True, slots=True)
class PreviewEvent:
    n: int  # 1, 2, 3... per job
    time: float
    preview: Preview


class Subscription:
    def __init__(self, hub: "PreviewHub", job_id: str):
        self._hub, self.job_id = hub, job_id
        self._pending: PreviewEvent | None = None
        self._ready = asyncio.Event()
        self.dropped = 0  # previews replaced before this subscriber read them

    def offer(self, event: PreviewEvent) -> None:
        if self._pending is not None:
            self.dropped += 1
        self._pending = event
        self._ready.set()

    async def wait(self) -> None:
        await self._ready.wait()

    def take(self) -> PreviewEvent | None:
        event, self._pending = self._pending, None
        self._ready.clear()
        return event

    def close(self) -> None:
        self._hub._unsubscribe(self)


class PreviewHub:
    def __init__(self) -> None:
        self._latest: dict[str, PreviewEvent] = {}
        self._subs: dict[str, set[Subscription]] = {}
        self.relay: RedisPreviewRelay | None = None  # set when processes share a Redis
        self._local: set[str] = set()  # jobs whose previews come from this process's backends

    def publisher(self, job_id: str) -> PreviewCallback:
        return lambda preview: self.publish(job_id, preview)

    def publish(self, job_id: str, preview: Preview) -> None:
        last = self._latest.get(job_id)
        event = PreviewEvent(n=last.n + 1 if last else 1, time=time.time(), preview=preview)
        self._local.add(job_id)
        self._offer(job_id, event)
        if self.relay is not None:
            self.relay.published(job_id, event)

    def deliver(self, job_id: str, event: PreviewEvent) -> None:
        """A preview of a job running in another process: kept only while someone here reads."""
        last = self._latest.get(job_id)
        if job_id in self._subs and (last is None or event.n > last.n):
            self._offer(job_id, event)

    def _offer(self, job_id: str, event: PreviewEvent) -> None:
        self._latest.pop(job_id, None)  # re-inserted last: the dict stays oldest-first
        self._latest[job_id] = event
        while len(self._latest) > MAX_JOBS:  # a job whose end this process never saw
            old = next(iter(self._latest))
            self._latest.pop(old)
            self._local.discard(old)
        for sub in self._subs.get(job_id, ()):
            sub.offer(event)

    def subscribe(self, job_id: str) -> Subscription:
        """Follow the job's previews, starting with the latest one if there is one."""
        sub = Subscription(self, job_id)
        self._subs.setdefault(job_id, set()).add(sub)
        if job_id in self._latest:
            sub.offer(self._latest[job_id])
        elif self.relay is not None:
            self.relay.fetch_latest(job_id)  # it may run in another process
        return sub

    def forget(self, job_id: str) -> None:
        """The job left generation: its previews are of no more use."""
        self._local.discard(job_id)
        if self._latest.pop(job_id, None) is not None and self.relay is not None:
            self.relay.forget(job_id)

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]
                if sub.job_id not in self._local:  # nobody reads a remote job's preview here
                    self._latest.pop(sub.job_id, None)

    def stats(self) -> dict[str, int]:
        return {"jobs_with_preview": len(self._latest), "subscribers": sum(len(s) for s in self._subs.values())}
