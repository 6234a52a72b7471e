"""How late the event loop gets to what is due: `comfy_gateway_event_loop_lag_seconds`.

Every request, websocket frame and stage hand-over of a process runs on one event loop, so a
call that holds it (a big JSON encode, hashing or decoding megabytes on the loop, a synchronous
file write) delays everything else by as long. A sampler task sleeps LOOP_LAG_INTERVAL seconds
at a time and records how much later than asked it woke: near zero on a healthy loop, the
length of the stall (less at most one interval) when something held it. It is the measure
Node's prom-client exposes as `nodejs_eventloop_lag_seconds`; one wake-up per interval costs
a few microseconds (0 turns it off).
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Histogram

# Fine around 10 ms (a stall a user notices in a 10-20 ms request), up to the multi-second
# stalls a blocked loop can show.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLagSampler:
    def __init__(self, registry: CollectorRegistry, interval: float):
        self.interval = interval
        self.lag = Histogram("comfy_gateway_event_loop_lag_seconds", "How much later than due the event loop "
                             "ran a timer (sampled every LOOP_LAG_INTERVAL): a stall holds every request",
                             buckets=BUCKETS, registry=registry)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lag.observe(max(0.0, loop.time() - due))
