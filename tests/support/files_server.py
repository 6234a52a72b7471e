"""A small HTTP server inside the test process that serves input files the way real sites do
(and the way hostile ones do), and counts every request it receives, so a test can assert that
a refused URL was never fetched."""

from __future__ import annotations

import asyncio
import collections
from typing import Callable

from aiohttp import web


class FilesServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = 0
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (body, content type)
        self.hits: collections.Counter[str] = collections.Counter()
        self.headers: dict[str, dict[str, str]] = {}  # path -> extra response headers
        self.active = self.max_active = 0  # requests being answered now, and the most at once
        self.delay: dict[str, float] = {}
        self.sequences: dict[str, list[bytes]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())

    def serve_in_turn(self, path: str, bodies: list[bytes], content_type: str = "image/png") -> str:
        """Each request gets the next body (the last one again when they run out)."""
        self.sequences[path] = list(bodies)
        return self.serve(path, bodies[0], content_type)

    def serve(self, path: str, body: bytes, content_type: str = "image/png", delay: float = 0.0,
              headers: dict[str, str] | None = None) -> str:
        self.files[path] = (body, content_type)
        if headers:
            self.headers[path] = headers
        if delay:
            self.delay[path] = delay
        return self.url + path

    async def start(self) -> "FilesServer":
        app = web.Application()
        app.router.add_route("GET", "/redirect", self._redirect)
        app.router.add_route("GET", "/slow", self._slow)
        app.router.add_route("GET", "/chunked-big", self._chunked_big)
        app.router.add_route("GET", "/{tail:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, request: web.Request) -> None:
        self.hits[request.path] += 1

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        if request.path not in self.files:
            return web.Response(status=404, text="not here")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay.get(request.path, 0.0))
        finally:
            self.active -= 1
        body, content_type = self.files[request.path]
        sequence = self.sequences.get(request.path)
        if sequence:
            body = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        return web.Response(body=body, headers={"Content-Type": content_type, **self.headers.get(request.path, {})})

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        raise web.HTTPFound(request.query["to"])

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then a byte a second: only a total timeout ends it."""
        self._count(request)
        resp = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": "100000"})
        await resp.prepare(request)
        try:
            for _ in range(100000):
                await resp.write(b"\x89")
                await asyncio.sleep(1)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    async def _chunked_big(self, request: web.Request) -> web.StreamResponse:
        """A large body with no Content-Length: only counting the bytes as they come stops it."""
        self._count(request)
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(64):
                await resp.write(b"\0" * 65536)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp


async def start_server(host: str = "127.0.0.1", configure: Callable[[FilesServer], None] | None = None) -> FilesServer:
    server = await FilesServer(host).start()
    if configure:
        configure(server)
    return server
