"""uvicorn's server, with a drain on SIGTERM/SIGINT: the gateway stops taking jobs (503 with
Retry-After) but keeps serving results and streams while jobs in flight finish, for up to
SHUTDOWN_GRACE seconds; then the usual shutdown. A second signal stops at once."""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from .pipeline.runtime import Runtime

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime, grace: float):
        super().__init__(config)
        self._runtime, self._grace = runtime, grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets=None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is None and self._loop is not None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._start_drain, sig)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self, sig: int) -> None:
        if self._drain is None:
            log.info("signal %d: draining for up to %.0f s; no new jobs", sig, self._grace)
            self._drain = asyncio.ensure_future(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig: int) -> None:
        try:
            await self._runtime.drain(self._grace)
        finally:
            super().handle_exit(sig, None)
