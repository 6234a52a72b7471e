"""Wake many waiting streams a batch at a time.

Setting a thousand futures at once runs a thousand streams' reactions (read, render, send) in
one turn of the event loop, and every other request waits for all of them. Waking them twenty
at a time, with a short pause in between, lets the woken streams send and other requests be
answered between the batches (issue 11: no answer delayed past 250 ms while results fan out).
"""

from __future__ import annotations

import asyncio
from typing import Iterable

BATCH = 20
# Not sleep(0): the woken streams' sends take a few turns of the loop, and a short pause lets
# them (and other requests) through before the next batch.
PAUSE = 0.002


async def wake_in_batches(futures: Iterable[asyncio.Future[None]]) -> int:
    """Set every future not yet done; returns how many were woken."""
    woken = 0
    for fut in list(futures):
        if not fut.done():
            fut.set_result(None)
            woken += 1
            if woken % BATCH == 0:
                await asyncio.sleep(PAUSE)
    return woken
