"""One ComfyUI server: its HTTP client and its one long-lived websocket.

The websocket is opened before the first prompt and reconnected with backoff; frames are routed
to the prompt they name. After any gap, prompts in flight are settled from /history and /queue,
so a dropped socket never leaves a job waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Callable

import aiohttp
import orjson

from ..reconnect import Reconnecting
from .ask import Where, ask, asking, seconds_until
from .errors import BackendError, PromptCancelled, PromptLost, PromptNotAccepted, PromptOutcomeUnknown
from .history import raise_for_status
from .http import ComfyHTTP
from .naming import display_name
from .previews import parse_frame
from .reconciler import Reconciler
from .rotation import Rotation
from .tracker import PreviewCallback, ProgressCallback, PromptTracker

log = logging.getLogger(__name__)

HISTORY_LAG_MAX = 10.0  # seconds an ended prompt's history entry may take to appear


class _HistoryLag(BackendError):
    """No history entry yet for a prompt that ended: asked again like a failed request."""


class Backend:
    def __init__(self, url: str, session: aiohttp.ClientSession, *, timeout: float, lost_after: float,
                 reconcile_interval: float = 5.0, label: str | None = None):
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
        self.reconciler = Reconciler(self, reconcile_interval)
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

    def trackers(self) -> list[tuple[str, PromptTracker]]:
        return list(self._trackers.items())

    def busy_seconds(self) -> float:
        """Seconds so far during which this ComfyUI had at least one of our prompts (queued
        there or running): with the in-flight count, how well the gateway keeps it fed."""
        now = time.monotonic()
        return self._busy_total + (now - self._busy_since if self._busy_since is not None else 0.0)

    def _track(self, prompt_id: str, tracker: PromptTracker) -> None:
        if not self.connected.is_set():
            tracker.witness.missed_frames()
        if not self._trackers:
            self._busy_since = time.monotonic()
        self._trackers[prompt_id] = tracker

    def _untrack(self, prompt_id: str) -> None:
        if self._trackers.pop(prompt_id, None) is not None and not self._trackers and self._busy_since is not None:
            self._busy_total += time.monotonic() - self._busy_since
            self._busy_since = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._ws_loop(), name=f"ws:{self.name}")
        self.reconciler.start()

    async def stop(self) -> None:
        await self.reconciler.stop()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- running a prompt -------------------------------------------------------------------
    async def run(
        self, prompt_id: str, workflow: dict[str, Any], on_progress: ProgressCallback | None = None,
        deadline: float | None = None, on_preview: PreviewCallback | None = None,
    ) -> dict[str, Any]:
        """Queue the prompt under our own id, wait for it to end, and return its confirmed
        /history entry. Raises PromptRejected, ExecutionFailed, ExecutionInterrupted,
        PromptLost or BackendError. `deadline` (epoch seconds, the job's): how long an unknown
        outcome may be asked about."""
        tracker = PromptTracker(prompt_id, workflow, on_progress, on_preview)
        # Registered before the POST: ComfyUI may start sending frames before it answers.
        self._track(prompt_id, tracker)
        try:
            try:
                await self.http.post_prompt(workflow, client_id=self.client_id, prompt_id=prompt_id)
            except PromptOutcomeUnknown as exc:
                await self._after_unknown_post(prompt_id, tracker, exc, deadline)
            tracker.posted = True
            if self.disagrees():
                # The last status frame (maybe a clear) came before this POST's answer did.
                self.reconciler.poke()
            # Cancelled while the POST was on its way: withdraw it. (The caller watches the job
            # for its end meanwhile, e.g. a cancel by another process: see generation.py.)
            if tracker.cancel_requested:
                await self._withdraw(prompt_id)
                raise PromptCancelled(prompt_id)
            await tracker.ended
            # Every frame of a successful run seen: its outcome is known without asking.
            entry = tracker.witness.entry() or await self._confirmed_history(prompt_id, deadline)
        finally:
            self._untrack(prompt_id)
            tracker.close()
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

    async def _after_unknown_post(self, prompt_id: str, tracker: PromptTracker, exc: PromptOutcomeUnknown,
                                  deadline: float | None) -> None:
        """The POST's answer was lost: ask ComfyUI instead of guessing. Queued -> follow it as if
        the answer had come; in history -> it already ended (the caller reads the entry); in
        neither -> ComfyUI did not take it, and it may go elsewhere (PromptNotAccepted)."""
        log.warning("backend %s: %s; asking ComfyUI what became of prompt %s", self.name, exc, prompt_id,
                    extra={"job_id": prompt_id})
        state, _ = await ask(self.http, prompt_id, seconds_until(deadline, self._lost_after))
        if state is Where.unknown:
            raise PromptNotAccepted(f"{exc}; {self.name} has neither queued nor run it") from exc
        if state is Where.done:
            tracker.end()

    async def _confirmed_history(self, prompt_id: str, deadline: float | None) -> dict[str, Any]:
        """The history entry of a prompt that ended. The transcripts show history can lag the
        end frames: an empty answer is asked again for HISTORY_LAG_MAX seconds before the prompt
        counts as lost; a failed request is asked again until the job's deadline, since one
        failed request says nothing about how the prompt ended."""
        empty_until = time.monotonic() + HISTORY_LAG_MAX
        async for attempt in asking(seconds_until(deadline, self._lost_after), first=0.005, most=0.5):
            with attempt:
                entry = await self.http.history(prompt_id)
                if not entry:
                    if time.monotonic() > empty_until:
                        raise PromptLost(f"prompt {prompt_id} ended but {self.name} has no history for it")
                    raise _HistoryLag(prompt_id)
                return entry
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    # -- the websocket ----------------------------------------------------------------------
    async def _ws_loop(self) -> None:
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        ws_url += f"/ws?clientId={self.client_id}"
        reconnect = Reconnecting()
        had_gap = False
        while True:
            try:
                async with self._session.ws_connect(ws_url, heartbeat=20, max_msg_size=0) as ws:
                    # First message: ask for the preview frames that name their prompt (only a
                    # client's first message counts, see comfy/previews.py).
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                    self.connected.set()
                    self.down_since, self.last_error = None, None
                    reconnect.up()
                    self._changed()
                    log.info("backend %s: websocket connected", self.name)
                    if had_gap and self._trackers:
                        self.reconciler.poke(must=True)  # frames may have been missed meanwhile
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
            for tracker in self._trackers.values():
                tracker.witness.missed_frames()  # what was sent meanwhile is lost
            now = time.time()
            if self.down_since is None:
                self.down_since = now
                log.warning("backend %s: websocket lost (%s)", self.name, self.last_error)
            elif now - self.down_since > self._lost_after and self._trackers:
                self._fail_all(BackendError(
                    f"backend {self.name} unreachable for {now - self.down_since:.0f}s: {self.last_error}"))
            await reconnect.pause()

    def _route(self, raw: str) -> None:
        try:
            msg = orjson.loads(raw)
            data = msg.get("data") or {}
            if msg.get("type") == "status":
                remaining = ((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining")
                if isinstance(remaining, int) and remaining != self.queue_remaining:
                    self.queue_remaining = remaining
                    self._changed()
                if self.disagrees():
                    self.reconciler.poke()  # fewer there than ours: some may have vanished
                return
            tracker = self._trackers.get(data.get("prompt_id"))  # type: ignore[arg-type]
            if tracker is not None:
                if msg.get("type") in ("execution_start", "executing", "progress"):
                    self._running = tracker.prompt_id
                tracker.on_frame(msg.get("type"), data)
        except Exception:  # noqa: BLE001 - a strange frame must not kill the socket
            log.exception("backend %s: could not handle frame %.200s", self.name, raw)

    def disagrees(self) -> bool:
        """ComfyUI's last status frame counts fewer prompts than we have posted there and not
        seen end: some of ours may have left its queue without a word."""
        if self.queue_remaining is None:
            return False
        posted = sum(1 for t in self._trackers.values() if t.posted and not t.ended.done())
        return self.queue_remaining < posted

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

    def _fail_all(self, exc: BaseException) -> None:
        for tracker in list(self._trackers.values()):
            tracker.end(exc)
