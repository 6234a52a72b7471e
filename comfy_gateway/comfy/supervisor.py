"""Brings one backend into the rotation and keeps it out while it must stay out.

Whenever the backend is connected but not usable (comfy/rotation.py), one task works through,
in order: a latched GPU fault (wait until the ComfyUI restarted), an open circuit breaker (wait
out the cool-down, then probe), a missing warm-up (run WARMUP_WORKFLOW). A dropped websocket
cancels that task and, with a warm-up configured, asks for the warm-up again: a ComfyUI that
restarted has lost its loaded models.

A restart is recognised by ComfyUI's history: it lives in memory, so the prompt that hit the
fatal error is gone from /history/{id} after a restart and still there after a mere network
blip. (/system_stats carries no start time in 0.3.75 or 0.33.0, see the transcripts.)
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from .backend import Backend
from .breaker import Breaker
from .errors import BackendError, ExecutionFailed
from .faults import is_gpu_fatal
from .warmup import run_warmup

log = logging.getLogger(__name__)

RESTART_CHECK_SECONDS = 5.0  # how often a backend with a latched GPU fault is looked at


class Supervisor:
    def __init__(self, backend: Backend, *, warmup: dict[str, Any] | None, warmup_timeout: float,
                 breaker_threshold: int, breaker_cooldown: float,
                 on_warmup: Callable[[Backend, float], None] = lambda b, s: None):
        self.backend = backend
        self._warmup = warmup
        self._warmup_timeout = warmup_timeout
        self._on_warmup = on_warmup
        rotation = backend.rotation
        rotation.breaker = Breaker(breaker_threshold, breaker_cooldown)
        rotation.warmed = warmup is None
        self._was_connected = False
        self._task: asyncio.Task[None] | None = None
        backend.on_change(self._on_change)
        if backend.connected.is_set():
            self._on_change()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_change(self) -> None:
        backend, rotation = self.backend, self.backend.rotation
        connected = backend.connected.is_set()
        if connected != self._was_connected:
            self._was_connected = connected
            if not connected:
                if self._task is not None:
                    self._task.cancel()
                    self._task = None
                if self._warmup is not None and rotation.warmed:
                    rotation.warmed = False  # it may come back as a fresh process
                    rotation.changed()
                return
        if connected and not rotation.usable and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._work(), name=f"supervise:{backend.label}")

    async def _work(self) -> None:
        backend, rotation = self.backend, self.backend.rotation
        failures = 0
        while backend.connected.is_set() and not rotation.usable:
            try:
                if rotation.fatal is not None:
                    if not await self._restarted():
                        await asyncio.sleep(RESTART_CHECK_SECONDS)
                        continue
                    log.warning("backend %s: ComfyUI restarted; the GPU fault is cleared", backend.name)
                    rotation.fatal = rotation.fatal_prompt = None
                    rotation.warmed = self._warmup is None
                    rotation.changed()
                    continue
                if rotation.breaker.state == "open":
                    await asyncio.sleep(rotation.breaker.cooldown_left())
                    rotation.breaker.probing()
                    rotation.changed()
                    await self._probe()
                    rotation.breaker.close()
                    log.info("backend %s: probe passed, back in rotation", backend.name)
                    rotation.changed()
                    continue
                if not rotation.warmed:
                    await self._warm()
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: try again later
                failures += 1
                if is_gpu_fatal(exc):
                    self.latch(str(exc), exc.data.get("prompt_id") if isinstance(exc, ExecutionFailed) else None)
                elif rotation.breaker.state == "probing":
                    rotation.breaker.open()
                    log.warning("backend %s: probe failed (%s); out for another %gs", backend.name, exc,
                                rotation.breaker.cooldown)
                    rotation.changed()
                else:
                    rotation.warmup_error = f"{type(exc).__name__}: {exc}"
                    log.warning("backend %s: warm-up failed (%s); trying again", backend.name, exc)
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)) * (0.5 + random.random()))

    async def _warm(self) -> None:
        rotation = self.backend.rotation
        assert self._warmup is not None
        rotation.warming = True
        try:
            seconds = await run_warmup(self.backend, self._warmup, self._warmup_timeout)
        finally:
            rotation.warming = False
        rotation.warmed, rotation.warmup_seconds, rotation.warmup_error = True, round(seconds, 3), None
        rotation.warmups += 1
        log.info("backend %s: warm-up ran in %.3f s; in rotation", self.backend.name, seconds)
        self._on_warmup(self.backend, seconds)
        rotation.changed()

    async def _probe(self) -> None:
        """The warm-up workflow if there is one (it proves the GPU runs), else the backend
        answering /system_stats and /queue."""
        if self._warmup is not None:
            await self._warm()
        else:
            await self.backend.http.system_stats()
            await self.backend.http.queue()

    async def _restarted(self) -> bool:
        prompt_id = self.backend.rotation.fatal_prompt
        if prompt_id is None:
            return True  # nothing to tell a blip from a restart by: the dropped socket must do
        try:
            return await self.backend.http.history(prompt_id) is None
        except BackendError:
            return False

    def latch(self, reason: str, prompt_id: str | None) -> None:
        """A fatal GPU error: out of rotation until the ComfyUI restarted."""
        rotation = self.backend.rotation
        rotation.fatal, rotation.fatal_prompt = reason, prompt_id
        log.error("backend %s: fatal GPU error, out of rotation until its ComfyUI restarts: %s",
                  self.backend.name, reason)
        rotation.changed()
