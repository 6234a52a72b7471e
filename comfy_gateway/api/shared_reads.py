"""What the streams of one job share: the wait for its next event, the read of its events and
record, and the rendering of its final result.

The 150 followers of one job are woken by the same event: each used to wait in the store, read
the store and render the result on its own, 150 times the work (and, with Redis, 150 times the
connections of a pool that refuses past its size). Here the first stream of a job to look does
it, and the others at the same point (same job, same last event) get its answer.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from prometheus_client import Counter

from ..inputs.singleflight import SingleFlight
from ..jobs.events import JobEvent
from ..jobs.model import Job
from ..jobs.store import JobStore
from ..pipeline.runtime import Runtime
from .wake_batches import wake_in_batches

STORE_WAIT = 30.0  # each stream waits for as long as it likes, on a shared wait this long at most
FINALS_KEPT = 256  # final events kept rendered: the jobs that ended last


class SharedReads:
    def __init__(self, runtime: Runtime):
        self._store = runtime.store
        self._reads: SingleFlight[tuple[list[JobEvent], Job | None]] = SingleFlight()
        self._waits: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._finals: OrderedDict[tuple[str, int, str], dict[str, Any]] = OrderedDict()
        self.final_renders = Counter("comfy_gateway_final_results_rendered",
                                     "final_result events rendered (once per job, shared by its streams)",
                                     registry=runtime.metrics.registry)

    async def read(self, job_id: str, seq: int) -> tuple[list[JobEvent], Job | None]:
        """The job's events after `seq`, then its record (at least as new as those events)."""
        return await self._reads.run((job_id, seq), lambda: self._read(job_id, seq))

    async def _read(self, job_id: str, seq: int) -> tuple[list[JobEvent], Job | None]:
        # The job is at least as new as every event rendered with it (a final_result event
        # must carry the final record).
        return await self._store.events_and_job(job_id, seq)

    async def wait(self, job_id: str, seq: int, timeout: float, also: asyncio.Future[None] | None = None) -> None:
        """Return when the job has an event past `seq`, when `also` is done, or after timeout."""
        key = (job_id, seq)
        group = self._waits.get(key)
        if group is None or group.store_wait.done():
            group = self._waits[key] = _WaitGroup(_event_past(self._store, job_id, seq))
            group.store_wait.add_done_callback(lambda t, k=key, g=group: self._waited(k, g))
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.waiters[woken] = None
        try:
            await asyncio.wait({woken, also} if also is not None else {woken}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            group.waiters.pop(woken, None)
            if not group.waiters and not group.store_wait.done():
                group.store_wait.cancel()  # the job's last stream left: nobody to wake

    def _waited(self, key: tuple[str, int], group: "_WaitGroup") -> None:
        if self._waits.get(key) is group:
            del self._waits[key]
        if not group.store_wait.cancelled():
            group.store_wait.exception()  # seen here; the stream's next read meets the store's trouble itself
        # The job's streams wake a batch at a time: all at once, they would hold up every
        # other request while they read, render and send.
        group.release = asyncio.ensure_future(wake_in_batches(group.waiters))

    def final(self, job: Job, event: JobEvent, base_url: str, render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The job's final_result event, rendered by `render` once for all its streams."""
        key = (job.id, event.seq, base_url)
        done = self._finals.get(key)
        if done is None:
            self.final_renders.inc()
            done = self._finals[key] = render()
            while len(self._finals) > FINALS_KEPT:
                self._finals.popitem(last=False)
        return done


async def _event_past(store: JobStore, job_id: str, seq: int) -> None:
    """Return once the job has an event past `seq`, is gone, or after STORE_WAIT."""
    async with store.events(job_id, after=seq, idle=STORE_WAIT) as events:
        async for _ in events:  # its first item: an event past seq, or a tick (idle, gone)
            return


class _WaitGroup:
    """The streams waiting for the same job past the same event, on one wait in the store."""

    def __init__(self, store_wait: Awaitable[None]):
        self.store_wait = asyncio.ensure_future(store_wait)
        self.waiters: dict[asyncio.Future[None], None] = {}
        self.release: asyncio.Future[int] | None = None


_shared: "weakref.WeakKeyDictionary[Runtime, SharedReads]" = weakref.WeakKeyDictionary()


def shared_reads(runtime: Runtime) -> SharedReads:
    """The process's shared reads (one per runtime)."""
    shared = _shared.get(runtime)
    if shared is None:
        shared = _shared[runtime] = SharedReads(runtime)
    return shared
