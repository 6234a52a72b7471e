"""Waiting for a state the services reach by themselves: poll in small steps, always with a
deadline, and say what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable


async def until(check: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = 30,
                step: float = 0.05) -> Any:
    """Return the first truthy result of `check()` (sync or async), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        await asyncio.sleep(step)


def until_sync(check: Callable[[], Any], what: str, timeout: float = 30, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        time.sleep(step)
