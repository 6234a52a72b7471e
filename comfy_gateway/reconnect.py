"""The pause between tries to bring a lost connection back (ComfyUI's websocket, the Redis
subscriptions), each held for the life of the process by a loop that connects, reads until the
connection ends, and tries again.

The pauses are tenacity's jittered exponential wait (0.1 s doubling up to 5 s, plus up to 0.1 s
of jitter, so that processes that lost the same server do not come back in step), counted over
the tries since the connection was last up: one that drops after an hour is tried again after
0.1 s, not after the longest pause of an earlier outage.
"""

from __future__ import annotations

import asyncio

from tenacity import AsyncRetrying, RetryCallState, wait_exponential_jitter


class Reconnecting:
    def __init__(self, first: float = 0.1, longest: float = 5.0) -> None:
        self._wait = wait_exponential_jitter(multiplier=first, max=longest, jitter=first)
        self._tries = RetryCallState(AsyncRetrying(), None, (), {})  # attempt_number: the tries so far

    def up(self) -> None:
        """The connection is up: the next outage starts with the shortest pause."""
        self._tries.attempt_number = 1

    def pause_length(self) -> float:
        return self._wait(self._tries)

    async def pause(self) -> None:
        """Wait before the next try."""
        delay = self.pause_length()
        self._tries.attempt_number += 1
        await asyncio.sleep(delay)
