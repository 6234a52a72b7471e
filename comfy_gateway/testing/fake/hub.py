"""The fake's websockets: sockets registered by clientId, frames published one at a time in
the order they were sent, and connections cut on demand.

Visibility is ComfyUI's: a frame addressed to a clientId reaches only the socket registered
under that id, a frame with no id reaches every registered socket, and a second socket with
the same id replaces the first (which stays open and gets nothing more).
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from comfy_gateway.testing.fake.knobs import Knobs, Stats
from comfy_gateway.testing.fake.protocol import FEATURES, frame


class Sock:
    __slots__ = ("ws", "request", "sid", "remaining", "dropped", "flags")

    def __init__(self, ws, request, sid, remaining):
        self.ws, self.request, self.sid, self.remaining, self.dropped = ws, request, sid, remaining, False
        self.flags: dict = {}  # the client's feature_flags (server.py: sockets_metadata)


class WebSocketHub:
    def __init__(self, knobs: Knobs, stats: Stats):
        self._knobs, self._stats = knobs, stats
        self._sockets: dict[str, Sock] = {}  # registered, by clientId (what events go to)
        self._open: set[Sock] = set()        # every open socket, registered or replaced
        self._outq: asyncio.Queue | None = None
        self._publisher: asyncio.Task | None = None

    @property
    def open_count(self) -> int:
        return len(self._open)

    # ------------------------------------------------------------------ publishing
    def start(self) -> None:
        self._outq = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish_loop())

    def stop(self) -> list[asyncio.Task]:
        """Cancel the publisher; returns it for the caller to await. Frames not yet sent are lost."""
        tasks = [self._publisher] if self._publisher is not None else []
        for t in tasks:
            t.cancel()
        self._publisher, self._outq = None, None
        return tasks

    def restart(self) -> None:
        """A fresh, empty frame queue and publisher (a restarted ComfyUI sends nothing stale)."""
        if self._outq is None:
            return
        self._outq = asyncio.Queue()
        if self._publisher is not None:
            self._publisher.cancel()
        self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """server.send_sync: to the socket registered as ``sid``, or to all when sid is None."""
        if self._outq is not None:
            self._outq.put_nowait((frame(event, data), sid))

    async def _publish_loop(self) -> None:
        q = self._outq  # its own queue: a restart gives the next publisher a new one
        while True:
            msg, sid = await q.get()
            if sid is None:
                targets = list(self._sockets.values())
            else:
                s = self._sockets.get(sid)
                targets = [s] if s is not None else []
            for s in targets:
                await self.send_now(s, msg)

    def send_bytes(self, message: bytes, sid: str | None) -> None:
        """server.send_bytes: one binary frame (already encoded, see previews.py)."""
        if self._outq is not None:
            self._stats["previews_sent"] += 1
            self._outq.put_nowait((message, sid))

    def supports(self, sid: str | None, flag: str) -> bool:
        """feature_flags.supports_feature(sockets_metadata, sid, flag)."""
        s = self._sockets.get(sid) if sid is not None else None
        return bool(s is not None and s.flags.get(flag))

    async def send_now(self, s: Sock, msg: str | bytes) -> None:
        """One frame to one socket, counted, and the socket dropped once its frame budget is spent."""
        if s.dropped or s.ws.closed:
            return
        try:
            if isinstance(msg, bytes):
                await s.ws.send_bytes(msg)
            else:
                await s.ws.send_str(msg)
        except (ConnectionError, RuntimeError):
            return
        self._stats["frames_sent"] += 1
        if s.remaining is not None:
            s.remaining -= 1
            if s.remaining <= 0:
                self.drop(s)

    # ------------------------------------------------------------------ connections
    def drop(self, s: Sock) -> None:
        """Cut the connection under the socket (no close frame), as a crash or network drop would."""
        s.dropped = True
        if self._sockets.get(s.sid) is s:
            del self._sockets[s.sid]
        self._open.discard(s)
        transport = s.request.transport
        if transport is not None:
            transport.close()

    def drop_all(self) -> None:
        for s in list(self._open):
            self.drop(s)

    def set_remaining(self, frames: int | None) -> None:
        """Give every open socket a budget of ``frames`` more frames (None: unlimited)."""
        for s in self._open:
            s.remaining = frames

    async def connect(self, request: web.Request) -> Sock:
        """Upgrade and register under ``?clientId=`` (a random id if none is given)."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)  # replaced, left open, gets nothing more
        else:
            sid = uuid.uuid4().hex
        s = Sock(ws, request, sid, self._knobs["drop_ws_after_frames"])
        self._sockets[sid] = s
        self._open.add(s)
        self._stats["ws_connections_opened"] += 1
        return s

    async def listen(self, s: Sock) -> None:
        """Read the client's messages until it goes: only a first ``feature_flags`` is answered."""
        first = True
        async for msg in s.ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                    if first and data.get("type") == "feature_flags":
                        s.flags = data.get("data", {}) or {}
                        await self.send_now(s, frame("feature_flags", FEATURES))
                    first = False
                except Exception:  # ComfyUI logs and ignores bad client messages
                    pass

    def release(self, s: Sock) -> None:
        self._open.discard(s)
        if not s.dropped:
            self._sockets.pop(s.sid, None)  # by id, as ComfyUI does (may unregister a newer socket)
