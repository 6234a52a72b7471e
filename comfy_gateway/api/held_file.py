"""A file response that holds its file open from before it answers until the last byte is sent.

Starlette's FileResponse looks the file up by path twice: it stats it to write the headers, then
opens it to send the body. Outputs and uploaded assets are swept by age (LOCAL_OUTPUT_TTL,
ASSET_TTL); a sweep falling between those two steps sent a 200 with its headers and then closed
the connection with no body. Opened first, the file's bytes stay readable through the open
handle after it is unlinked (POSIX), so a download that began is finished, and one that comes
after the sweep is a clean 404. Ranges, HEAD and validators are FileResponse's own.
"""

from __future__ import annotations

import os
import stat
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send


class HeldFileResponse(FileResponse):
    def __init__(self, path: str | os.PathLike[str], *, gone: Response, **kw) -> None:
        """`gone`: the answer (a 404 in the API's own form) when the file is gone by the time
        this one starts."""
        super().__init__(path, **kw)
        self._gone = gone
        self._held: anyio.AsyncFile[bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            held = await anyio.open_file(self.path, mode="rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await self._gone(scope, receive, send)
            return
        try:
            found = os.fstat(held.wrapped.fileno())
            if not stat.S_ISREG(found.st_mode):
                await self._gone(scope, receive, send)
                return
            self._held, self.stat_result = held, found
            self.set_stat_headers(found)
            # A server offering "pathsend" would send the file by its path again: not offered.
            extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            self._held = None
            with anyio.CancelScope(shield=True):
                await held.aclose()

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        # FileResponse's one way to the bytes: the handle opened above, from its start (a range
        # seeks on its own); closed by __call__, after the last byte.
        if self._held is None:
            raise RuntimeError("HeldFileResponse reads only the file it opened in __call__")
        await self._held.seek(0)
        yield self._held
