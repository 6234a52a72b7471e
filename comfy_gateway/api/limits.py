"""Refuse request bodies over MAX_BODY_BYTES before they are read into memory (pure ASGI)."""

from __future__ import annotations

from typing import Any

import orjson


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._refuse(send, int(value))
        seen = 0
        state = {"started": False, "refused": False}

        async def counted_receive() -> dict:
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not state["started"]:
                    # A body without Content-Length grew past the limit: answer 413 now and
                    # tell the app the client left, so it stops reading and its reply is dropped.
                    state["refused"] = True
                    await self._refuse(send, seen)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, send: Any, size: int) -> None:
        body = orjson.dumps({"detail": f"request body of {size} bytes or more is over the limit of "
                                       f"{self.max_bytes} bytes (MAX_BODY_BYTES)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
