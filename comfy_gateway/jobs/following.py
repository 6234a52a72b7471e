"""Following one job: `async for item in store.events(job_id, after=seq)`, the one way every
reader (SSE streams, sync calls, workers watching for the end, event webhooks) follows a job.

The iterator yields the job's events past `after`, in order, as they come, and a `Tick` when
something else is worth a look: nothing came for `idle` seconds ("idle", for keep-alives and
time limits), a stage queue changed while `queue_changes` is on ("queue_moved", for streams
showing a position), or the job is gone ("gone": expired, never existed). It stops after the
event that ends the job, and after "gone".

It is registered with its store from the moment it is made, and stays registered between
reads: a writer sets its flag, the follower clears the flag before each read, so an event
written after a read always wakes it, and a shared store reads once per wake-up. Make it
before reading the job itself (nothing written after that read can then slip by), and close it
(`async with`, or `close()`) when leaving before its end.

A shared store may also ask, before the follower first waits, that its process be told of the
job's events written by other processes from then on (`hear`, redis_heard.py); if it was not
told so far, the follower looks once more before it waits.

`wake` is an economy for readers that only care about some events: "state" is not woken by
progress events alone, "end" only by the event that ends the job. The events it yields are
all of them either way (read when it wakes). `look_first=False` spares the read a follower
makes as it starts, for one that learned otherwise that nothing it waits for has come yet
(from store.status() asked after making it, or from a change of the job written after it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal

from .events import JobEvent

Wake = Literal["all", "state", "end"]
# What an event is to its followers: a "progress" frame, the "end" (the event that ends the
# job) or "other" (any change of state).
EventKind = Literal["progress", "end", "other"]


@dataclass(frozen=True, slots=True)
class Tick:
    reason: Literal["idle", "queue_moved", "gone"]


IDLE, QUEUE_MOVED, GONE = Tick("idle"), Tick("queue_moved"), Tick("gone")


def kind_of(event_type: str) -> EventKind:
    return "progress" if event_type == "progress" else "end" if event_type == "final_result" else "other"


class Watch:
    """One follower's registration: `news` when an event it waits for was written since its
    last read (or nothing was read yet), `queue_moved` when a queue changed while it listened
    to queues; `woken` is set by either."""

    __slots__ = ("job_id", "wake", "news", "queue_moved", "woken")

    def __init__(self, job_id: str, wake: Wake, look_first: bool = True):
        self.job_id, self.wake = job_id, wake
        self.news, self.queue_moved = look_first, False  # look_first: nothing read yet
        self.woken = asyncio.Event()
        if look_first:
            self.woken.set()

    def event(self, kind: EventKind) -> None:
        if self.wake == "all" or kind == "end" or (self.wake == "state" and kind != "progress"):
            self.news = True
            self.woken.set()

    def queue_changed(self) -> None:
        self.queue_moved = True
        self.woken.set()

    def anything(self) -> None:
        """Whatever was missed (a lost subscription): look again."""
        self.news = True
        self.woken.set()


class Watchers:
    """The watches of one process, by job, and those listening to queue changes."""

    def __init__(self) -> None:
        self._by_job: dict[str, set[Watch]] = {}
        self._queues: set[Watch] = set()

    def add(self, watch: Watch) -> None:
        self._by_job.setdefault(watch.job_id, set()).add(watch)

    def remove(self, watch: Watch) -> None:
        self._queues.discard(watch)
        watches = self._by_job.get(watch.job_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._by_job[watch.job_id]

    def listen_to_queues(self, watch: Watch, on: bool) -> None:
        if on:
            self._queues.add(watch)
        else:
            self._queues.discard(watch)
            watch.queue_moved = False

    def event(self, job_id: str, kind: EventKind) -> None:
        for watch in self._by_job.get(job_id, ()):
            watch.event(kind)

    def queue_changed(self) -> None:
        for watch in self._queues:
            watch.queue_changed()

    def job_gone(self, job_id: str) -> None:
        for watch in self._by_job.get(job_id, ()):
            watch.anything()

    def wake_all(self) -> None:
        for watches in self._by_job.values():
            for watch in watches:
                watch.anything()
        self.queue_changed()

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_job.values())


# Reads the job's events past a seq; None when the job is gone.
Reader = Callable[[str, int], Awaitable["list[JobEvent] | None"]]
# Makes sure this process is woken by the job's events written elsewhere from now on; True when
# it was not sure of it before (what was written before then must be read: it woke nothing).
Hear = Callable[[str], Awaitable[bool]]


class JobEvents:
    """What store.events() returns (see the module's docstring). `idle` and `queue_changes`
    may be changed between items: they apply from the next wait on."""

    def __init__(self, read: Reader, watchers: Watchers, job_id: str, after: int = 0, *,
                 wake: Wake = "all", queue_changes: bool = False, idle: float = 30.0, look_first: bool = True,
                 hear: Hear | None = None):
        self.job_id, self.seq, self.idle = job_id, max(after, 0), idle
        self._read, self._watchers = read, watchers
        self._hear = hear  # asked before the first wait (a shared store's: see redis_heard.py)
        self._watch = Watch(job_id, wake, look_first)
        watchers.add(self._watch)
        self._ready: deque[JobEvent] = deque()
        self._over = False
        self._queue_changes = False
        self.queue_changes = queue_changes

    @property
    def queue_changes(self) -> bool:
        return self._queue_changes

    @queue_changes.setter
    def queue_changes(self, on: bool) -> None:
        if on != self._queue_changes and not self._over:
            self._queue_changes = on
            self._watchers.listen_to_queues(self._watch, on)

    def __aiter__(self) -> "JobEvents":
        return self

    async def __anext__(self) -> JobEvent | Tick:
        if self._ready:
            return self._give(self._ready.popleft())
        if self._over:
            raise StopAsyncIteration
        watch = self._watch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.idle
        while True:
            if watch.news:
                watch.news = False  # before reading: an event written during the read sets it again
                try:
                    events = await self._read(self.job_id, self.seq)
                except BaseException:
                    watch.anything()  # this read never happened: the next one must
                    raise
                if events is None:
                    self.close()
                    return GONE
                if events:
                    self._ready.extend(events)
                    return self._give(self._ready.popleft())
                continue  # a stale wake-up (written before our last read): look at the rest
            if watch.queue_moved:
                watch.queue_moved = False
                return QUEUE_MOVED
            if self._hear is not None:  # about to wait: the waking must reach this process
                if await self._hear(self.job_id):
                    watch.news = True
                self._hear = None
                continue
            watch.woken.clear()  # nothing pending, nothing awaited since looking
            remaining = deadline - loop.time()
            if remaining <= 0:
                return IDLE
            # asyncio.timeout around the event's own wait, not wait_for: a cancel is never
            # swallowed, and cancelling here loses nothing (the watch keeps what woke it). Nor
            # asyncio.wait on a task of the wait: that costs a task and two more turns of the
            # loop at every wake-up, on the way of every sync answer.
            try:
                async with asyncio.timeout(remaining):
                    await watch.woken.wait()
            except TimeoutError:
                pass
            if not watch.woken.is_set():
                return IDLE

    def _give(self, event: JobEvent) -> JobEvent:
        self.seq = event.seq
        if event.type == "final_result":
            self.close()
        return event

    def close(self) -> None:
        """Stop following (the events already read are still given)."""
        if not self._over:
            self._over = True
            self._watchers.remove(self._watch)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "JobEvents":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
