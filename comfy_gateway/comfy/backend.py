"""One ComfyUI server: its HTTP client and its one long-lived websocket.

The websocket is opened before the first prompt and reconnected with backoff; frames are routed
to the prompt they name. After any gap, prompts in flight are settled from /history and /queue,
so a dropped socket never leaves a job waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from typing import Any, Awaitable, Callable

import aiohttp
import orjson

from .errors import BackendError, PromptCancelled, PromptLost
from .history import raise_for_status
from .http import ComfyHTTP
from .naming import display_name
from .previews import parse_frame
from .rotation import Rotation
from .tracker import PreviewCallback, ProgressCallback, PromptTracker

log = logging.getLogger(__name__)


class Backend:
    def __init__(self, url: str, session: aiohttp.ClientSession, *, timeout: float, lost_after: float,
                 label: str | None = None):
        self.url = url  # may carry credentials: handed to the HTTP client only, never shown
        self.name = display_name(url)  # host:port[/path], for results, logs and /queue-info
        self.label = label or self.name  # no address: for /health and /ready
        self.http = ComfyHTTP(url, session, timeout)
        self.client_id = uuid.uuid4().hex
        self._session = session
        self._lost_after = lost_after
        self._trackers: dict[str, PromptTracker] = {}
        self.connected = asyncio.Event()
        self.down_since: float | None = time.time()
        self.last_error: str | None = None
        # ComfyUI's own count of prompts queued or running, from its broadcast `status` frames:
        # the load every gateway process put on it, not only ours.
        self.queue_remaining: int | None = None
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._busy_total = 0.0  # seconds with at least one of our prompts on this ComfyUI
        self._busy_since: float | None = None
        self._running: str | None = None  # the prompt of ours ComfyUI runs now (previews name none)
        # In rotation takes more than a connected socket: warm-up, circuit breaker, GPU faults.
        self.rotation = Rotation(self._changed)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` when the backend joins or leaves the rotation or its load changes."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    @property
    def in_rotation(self) -> bool:
        return self.connected.is_set() and self.rotation.usable

    @property
    def in_flight(self) -> int:
        return len(self._trackers)

    def busy_seconds(self) -> float:
        """Seconds so far during which this ComfyUI had at least one of our prompts (queued
        there or running): with the in-flight count, how well the gateway keeps it fed."""
        now = time.monotonic()
        return self._busy_total + (now - self._busy_since if self._busy_since is not None else 0.0)

    def _track(self, prompt_id: str, tracker: PromptTracker) -> None:
        if not self._trackers:
            self._busy_since = time.monotonic()
        self._trackers[prompt_id] = tracker

    def _untrack(self, prompt_id: str) -> None:
        if self._trackers.pop(prompt_id, None) is not None and not self._trackers and self._busy_since is not None:
            self._busy_total += time.monotonic() - self._busy_since
            self._busy_since = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._ws_loop(), name=f"ws:{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- running a prompt -------------------------------------------------------------------
    async def run(
        self, prompt_id: str, workflow: dict[str, Any], on_progress: ProgressCallback | None = None,
        still_wanted: Callable[[], Awaitable[bool]] | None = None, on_preview: PreviewCallback | None = None,
    ) -> dict[str, Any]:
        """Queue the prompt under our own id, wait for it to end, and return its confirmed
        /history entry. Raises PromptRejected, ExecutionFailed, ExecutionInterrupted,
        PromptLost or BackendError."""
        tracker = PromptTracker(prompt_id, workflow, on_progress, on_preview)
        # Registered before the POST: ComfyUI may start sending frames before it answers.
        self._track(prompt_id, tracker)
        try:
            await self.http.post_prompt(workflow, client_id=self.client_id, prompt_id=prompt_id)
            tracker.posted = True
            # Cancelled while the POST was on its way (maybe from another process): withdraw it.
            if tracker.cancel_requested or (still_wanted is not None and not await still_wanted()):
                await self._withdraw(prompt_id)
                raise PromptCancelled(prompt_id)
            await tracker.ended
            entry = await self._confirmed_history(prompt_id)
        finally:
            self._untrack(prompt_id)
        raise_for_status(entry)
        return entry

    async def cancel(self, prompt_id: str) -> None:
        """Withdraw one prompt: delete it from ComfyUI's queue if it waits there, interrupt it if
        it runs (the prompt_id-scoped interrupt never touches another client's prompt), and free
        the worker waiting on it at once."""
        tracker = self._trackers.get(prompt_id)
        if tracker is not None:
            tracker.cancel_requested = True
        if tracker is None or tracker.posted:
            await self._withdraw(prompt_id)
        if tracker is not None:
            tracker.end(PromptCancelled(prompt_id))

    async def _withdraw(self, prompt_id: str) -> None:
        try:
            await self.http.delete_queued([prompt_id])
            await self.http.interrupt(prompt_id)
        except BackendError as exc:
            log.warning("backend %s: could not withdraw prompt %s: %s", self.name, prompt_id, exc)

    async def _confirmed_history(self, prompt_id: str) -> dict[str, Any]:
        # The transcripts show history can lag the end frames: retry briefly before giving up.
        delay, deadline = 0.005, time.monotonic() + 10
        while True:
            entry = await self.http.history(prompt_id)
            if entry:
                return entry
            if time.monotonic() > deadline:
                raise PromptLost(f"prompt {prompt_id} ended but {self.name} has no history for it")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- the websocket ----------------------------------------------------------------------
    async def _ws_loop(self) -> None:
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        ws_url += f"/ws?clientId={self.client_id}"
        backoff = 0.1
        had_gap = False
        while True:
            try:
                async with self._session.ws_connect(ws_url, heartbeat=20, max_msg_size=0) as ws:
                    # First message: ask for the preview frames that name their prompt (only a
                    # client's first message counts, see comfy/previews.py).
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                    self.connected.set()
                    self.down_since, self.last_error, backoff = None, None, 0.1
                    self._changed()
                    log.info("backend %s: websocket connected", self.name)
                    if had_gap and self._trackers:
                        asyncio.create_task(self._reconcile())
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._route(msg.data)
                        elif msg.type == aiohttp.WSMsgType.BINARY:
                            self._route_binary(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
                    self.last_error = "websocket closed by the backend"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self.connected.is_set():
                self.connected.clear()
                self._changed()
            had_gap = True
            now = time.time()
            if self.down_since is None:
                self.down_since = now
                log.warning("backend %s: websocket lost (%s)", self.name, self.last_error)
            elif now - self.down_since > self._lost_after and self._trackers:
                self._fail_all(BackendError(
                    f"backend {self.name} unreachable for {now - self.down_since:.0f}s: {self.last_error}"))
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    def _route(self, raw: str) -> None:
        try:
            msg = orjson.loads(raw)
            data = msg.get("data") or {}
            if msg.get("type") == "status":
                remaining = ((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining")
                if isinstance(remaining, int) and remaining != self.queue_remaining:
                    self.queue_remaining = remaining
                    self._changed()
                return
            tracker = self._trackers.get(data.get("prompt_id"))  # type: ignore[arg-type]
            if tracker is not None:
                if msg.get("type") in ("execution_start", "executing", "progress"):
                    self._running = tracker.prompt_id
                tracker.on_frame(msg.get("type"), data)
        except Exception:  # noqa: BLE001 - a strange frame must not kill the socket
            log.exception("backend %s: could not handle frame %.200s", self.name, raw)

    def _route_binary(self, data: bytes) -> None:
        """A preview goes to the prompt it names, or (the older frame names none) to ours that
        runs now. Handled in place, never awaited: a slow preview reader must not hold up the
        socket (the subscribers keep only the latest one, see pipeline/preview_hub.py)."""
        try:
            frame = parse_frame(data)
            if frame is None:
                return
            tracker = self._trackers.get(frame.prompt_id or self._running or "")
            if tracker is not None:
                tracker.on_preview(frame)
        except Exception:  # noqa: BLE001 - a strange frame must not kill the socket
            log.exception("backend %s: could not handle a binary frame of %d bytes", self.name, len(data))

    async def _reconcile(self) -> None:
        """After a gap, frames may have been missed: settle each prompt in flight from
        /history, keep waiting for those still queued, and fail those the backend forgot."""
        # Only prompts whose POST had returned before the /queue snapshot can be judged by it.
        candidates = [(pid, t) for pid, t in self._trackers.items() if t.posted]
        try:
            queue = await self.http.queue()
        except BackendError as exc:
            log.warning("backend %s: reconcile skipped: %s", self.name, exc)
            return
        known = {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])}
        for prompt_id, tracker in candidates:
            try:
                if await self.http.history(prompt_id):
                    tracker.end()
                elif prompt_id not in known:
                    tracker.end(PromptLost(
                        f"{self.name} no longer knows prompt {prompt_id} (did ComfyUI restart?)"))
            except BackendError as exc:
                # The websocket's task carries no job context: name the job on the line.
                log.warning("backend %s: reconcile of %s failed: %s", self.name, prompt_id, exc,
                            extra={"job_id": prompt_id})

    def _fail_all(self, exc: BaseException) -> None:
        for tracker in list(self._trackers.values()):
            tracker.end(exc)
