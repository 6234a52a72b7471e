"""One Redis pub/sub subscription per process, fanned out to local waiters.

Why not one blocked XREAD per waiting client: every SSE stream and sync call would then hold a
Redis connection of its own. Here a single connection listens to two channels (this process's
own channel of job events, and the queue changes every process hears, published by the store's
Lua scripts) and wakes the local followers of jobs (following.py Watchers) and idle takers of
jobs. A job's events are told only to the processes its record lists (redis_heard.py): a
follower registers BEFORE it looks at Redis, and this process is listed before the follower
waits, so a message published after its look always wakes it; one published before only wakes
it needlessly. After the subscription breaks, every follower and taker is woken to look again,
since messages sent meanwhile are lost.

The process that wrote a change wakes its own waiters as soon as the script returns (local()),
without the round trip through the subscription: a stage hand-over or a sync answer in one
process then costs no pub/sub hop. Each message carries its writer's tag ("@<origin> " before
the payload) so that the writer skips the echo of what it already dispatched; the other
processes wake on it as before. A lone process is told nothing at all: a job's events go to the
other processes listed for it, and queue changes only when some other process listens
(redis_lua_parts.py `tell`, `announce`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Callable

from redis.asyncio import Redis

from ..reconnect import Reconnecting
from .following import EventKind, Watchers
from .redis_heard import Heard
from .redis_keys import RedisKeys

log = logging.getLogger(__name__)


def _wake(futures: set[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class Notifier:
    def __init__(self, redis: Redis, keys: RedisKeys, origin: str, heard: Heard):
        if not origin:
            raise ValueError("a Notifier needs an origin: a job's events are told to its processes by it")
        self._redis = redis
        self.origin = origin
        self.tag = f"@{origin} "  # prefixed by the scripts to what they publish
        self._events_channel, self._queues_channel = keys.events_channel, keys.queues_channel
        # The job events told to this process (redis_lua_parts.py `tell`), and the channel
        # whose subscriber count tells the scripts whether it hears the queues.
        self._told, self._own_queues = keys.events_told(self.tag), keys.queues_channel + self.tag
        self.watchers = Watchers()  # the followers of jobs in this process
        self.heard = heard  # the jobs it is told of lately (trusted for at most RESULT_TTL)
        # Per stage: how many "queue changed" messages came, and who waits for the next one.
        self._rings: dict[str, int] = defaultdict(int)
        self._ring_waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # Told of each job another process wrote (an event of its), before its followers here
        # wake; None: messages may have been lost (a broken subscription), any job may be.
        self.written_elsewhere: Callable[[str | None], None] = lambda job_id: None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-notifier")
        async with asyncio.timeout(30):
            await self._subscribed.wait()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._wake_all()

    async def _run(self) -> None:
        reconnect = Reconnecting()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._told, self._queues_channel, self._own_queues)
                self._subscribed.set()
                self._wake_all()  # anything published while we were away is unknown: look again
                reconnect.up()
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._dispatch(msg["channel"], msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                log.warning("redis subscription lost (%s); resubscribing", exc)
                self._wake_all()
                await reconnect.pause()
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    def _dispatch(self, channel: str, data: str) -> None:
        if data.startswith("@"):
            origin, _, data = data[1:].partition(" ")
            if origin == self.origin:
                return  # this process dispatched it when its script returned
        kind: EventKind = "other"
        if data[:1] in ("~", "!"):
            kind, data = ("progress" if data[0] == "~" else "end"), data[1:]
        if channel == self._told:
            self.written_elsewhere(data)
            channel = self._events_channel
        self._deliver(channel, data, kind)

    def local_event(self, job_id: str, kind: EventKind = "other") -> None:
        """This process just wrote an event of the job (the script returned)."""
        self._deliver(self._events_channel, job_id, kind)

    def local_queue(self, stage: str, sign: str) -> None:
        """This process just made a job available ('+') or took one out of line ('-')."""
        self._deliver(self._queues_channel, f"{stage} {sign}")

    def _deliver(self, channel: str, data: str, kind: EventKind = "other") -> None:
        if channel == self._events_channel:
            self.watchers.event(data, kind)
        elif channel == self._queues_channel:
            stage, _, sign = data.partition(" ")
            if sign == "+":  # a job to take: wake ONE idle taker (a job taken needs none)
                # One message announces one job: waking every idle taker of the stage would
                # send them all to Redis for it, and all but one would come back empty. A taker
                # busy in Redis when the message came sees the ring move and looks again, and a
                # woken taker always looks (it can only fail to if it is being stopped).
                self._rings[stage] += 1
                self._wake_one_taker(stage)
            self.watchers.queue_changed()

    def _wake_one_taker(self, stage: str) -> None:
        waiters = self._ring_waiters.get(stage)
        while waiters:
            fut = waiters.pop()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        self.written_elsewhere(None)
        for stage in list(self._ring_waiters):
            self._rings[stage] += 1
        self.watchers.wake_all()
        groups = list(self._ring_waiters.values())
        self._ring_waiters = defaultdict(set)
        for group in groups:
            _wake(group)

    # -- takers -------------------------------------------------------------------------------
    def ring_mark(self, stage: str) -> int:
        return self._rings[stage]

    async def wait_ring(self, stage: str, mark: int, timeout: float) -> None:
        """Return once a queue change of the stage came after `mark` was read, or on timeout."""
        if self._rings[stage] != mark:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ring_waiters[stage].add(fut)
        try:
            # asyncio.timeout, not wait_for: wait_for returns normally when the task is cancelled
            # right after the future was woken (a local wake-up comes at once), which would
            # lose the cancel and let a stopped taker take the job. (Nor asyncio.wait: a turn of
            # the loop more at every wake-up.)
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # Woken for a job but stopped before taking it: the wake-up goes to another taker.
            # (Stopped while waiting, the future was cancelled with the wait: nothing to pass on.)
            self._ring_waiters.get(stage, set()).discard(fut)
            if fut.done() and not fut.cancelled():
                self._wake_one_taker(stage)
            raise
        finally:
            self._ring_waiters.get(stage, set()).discard(fut)
