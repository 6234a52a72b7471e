"""One watcher of the queues per process, for every stream of a waiting job.

A stream of a waiting job shows its place in the queue and updates it when a queue moves.
Left to each stream, one queue change woke every such stream at once, and each read the store
to place its own job: 2,850 followers of 19 waiting jobs made one change cost seconds of
event loop (issue 11, bench part `fanout`). Here one task waits for queue changes, places every
followed job from one reading of the queues (pipeline/queue_places.py), and wakes only the
streams whose place changed, a batch at a time (wake_batches.py). The places are computed at
most once per QUEUE_EVENT_MIN_INTERVAL, the rate at which a stream may show them anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Iterator

from prometheus_client import Counter

from ..inputs.singleflight import SingleFlight
from ..jobs.following import GONE, JobEvents
from ..jobs.model import Job
from ..pipeline.queue_places import Place, queue_places, stage_of
from ..pipeline.runtime import Runtime
from .wake_batches import wake_in_batches

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.2  # queue places computed at most five times a second, for all streams
IDLE_WAIT = 30.0
NEVER = 1 << 62  # an event seq no job reaches: the watcher's store wait returns on queue changes


class Follower:
    """One stream's view: the latest place of its job, and a future set when it changes."""

    __slots__ = ("job_id", "changed")

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def rearm(self) -> None:
        if self.changed.done():
            self.changed = asyncio.get_running_loop().create_future()


class QueueWatch:
    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._followers: dict[str, dict[Follower, None]] = {}  # job id -> its streams, in order
        self._jobs: dict[str, Job] = {}  # the newest record a stream saw of each followed job
        self._places: dict[str, tuple[str, Place]] = {}  # job id -> (status it was placed in, place)
        self._task: asyncio.Task[None] | None = None
        self._first: SingleFlight[Place] = SingleFlight()
        self._last = 0.0
        self.snapshots = Counter("comfy_gateway_queue_snapshots",
                                 "Readings of the queues to place followed jobs (shared by all their streams)",
                                 registry=runtime.metrics.registry)

    @contextlib.contextmanager
    def follow(self, job_id: str) -> Iterator[Follower]:
        follower = Follower(job_id)
        self._followers.setdefault(job_id, {})[follower] = None
        try:
            yield follower
        finally:
            followers = self._followers.get(job_id)
            if followers is not None:
                followers.pop(follower, None)
                if not followers:
                    del self._followers[job_id]
                    self._jobs.pop(job_id, None)
                    self._places.pop(job_id, None)
            if not self._followers and self._task is not None:
                self._task.cancel()  # nobody left to tell
                self._task = None

    async def place(self, follower: Follower, job: Job) -> Place:
        """The job's latest place; read now when none was computed for its current status.
        From now on, `follower.changed` is set when the place changes."""
        follower.rearm()  # first: a change published from here on wakes this follower
        self._jobs[job.id] = job
        known = self._places.get(job.id)
        if known is None or known[0] != job.status.value:
            # The streams of one job arriving (or seeing its new status) together read once.
            place = await self._first.run((job.id, job.status.value), lambda: self._place_one(job))
            known = self._places.setdefault(job.id, (job.status.value, place))
        if stage_of(job) is not None and self._task is None:
            self._task = asyncio.create_task(self._watch())
        return known[1]

    async def _place_one(self, job: Job) -> Place:
        self.snapshots.inc()
        place = (await queue_places(self._runtime, [job]))[job.id]
        self._places[job.id] = (job.status.value, place)
        return place

    async def _watch(self) -> None:
        # One registration for queue changes, kept while the places are read and the streams
        # woken: a change that comes meanwhile makes the next wait return at once. (A wait
        # registered anew after each reading missed such a change, and a stream could show a
        # place one behind until the next change, seconds later.)
        events: JobEvents | None = None
        try:
            while self._waiting():
                if events is None:
                    # Past every event the job will have: only a queue change, the timeout or
                    # the job vanishing end a wait.
                    events = self._runtime.store.events(next(iter(self._waiting())), after=NEVER, wake="end",
                                                        queue_changes=True, idle=IDLE_WAIT, look_first=False)
                if await anext(events, GONE) is GONE:  # a Tick: queue_moved, idle or gone
                    events.close()
                    events = None
                pause = MIN_INTERVAL - (time.monotonic() - self._last)
                if pause > 0:
                    await asyncio.sleep(pause)
                if self._waiting():
                    await self._replace()
        except Exception:  # noqa: BLE001 - the streams go on; a new one restarts the watch
            log.exception("queue watch failed")
        finally:
            if events is not None:
                events.close()
            if self._task is asyncio.current_task():
                self._task = None

    def _waiting(self) -> dict[str, Job]:
        return {i: j for i, j in self._jobs.items() if stage_of(j) is not None and i in self._followers}

    async def _replace(self) -> None:
        jobs = self._waiting()
        self._last = time.monotonic()
        self.snapshots.inc()
        places = await queue_places(self._runtime, jobs.values())
        for job_id, place in places.items():
            job = jobs[job_id]
            if self._places.get(job_id) == (job.status.value, place):
                continue
            self._places[job_id] = (job.status.value, place)
            await wake_in_batches(f.changed for f in list(self._followers.get(job_id, ())))


_watches: "weakref.WeakKeyDictionary[Runtime, QueueWatch]" = weakref.WeakKeyDictionary()


def queue_watch(runtime: Runtime) -> QueueWatch:
    """The process's watch (one per runtime)."""
    watch = _watches.get(runtime)
    if watch is None:
        watch = _watches[runtime] = QueueWatch(runtime)
    return watch
