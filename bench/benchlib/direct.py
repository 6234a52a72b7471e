"""The baseline: a lean, correct ComfyUI client with no gateway in between.

One websocket `/ws?clientId=<ours>`; each prompt is POSTed with our own prompt_id and client_id;
its end is the `executing {node: null}` frame for that prompt_id; then `/history/{id}` (retried
while ComfyUI answers `{}`), then every output file is streamed from `/view` to local disk.
That is the same work the gateway does per job, so the difference is the gateway's cost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

CHUNK = 1 << 20


class DirectComfy:
    def __init__(self, base_url: str, out_dir: Path, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.out_dir = out_dir
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._greeted: asyncio.Future[None] | None = None
        self.files_written = 0
        self.bytes_written = 0

    async def __aenter__(self) -> "DirectComfy":
        loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, limit_per_host=64))
        self._greeted = loop.create_future()
        self._ws = await self._session.ws_connect(
            f"{self.base_url.replace('http://', 'ws://', 1)}/ws?clientId={self.client_id}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        # ComfyUI greets a new socket with a `status` frame once it has registered it: only
        # then will it route our prompts' events to us.
        await asyncio.wait_for(self._greeted, 10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws:
            await self._ws.close()
        if self._session:
            await self._session.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
                continue
            frame = orjson.loads(msg.data)
            kind = frame.get("type")
            if kind == "status" and self._greeted is not None and not self._greeted.done():
                self._greeted.set_result(None)
            elif kind == "executing":
                data = frame.get("data") or {}
                if data.get("node") is None:
                    fut = self._waiters.get(data.get("prompt_id"))
                    if fut is not None and not fut.done():
                        fut.set_result("done")
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("ComfyUI websocket closed"))

    # -- one prompt, in steps ---------------------------------------------------------------
    async def post(self, workflow: dict[str, Any]) -> tuple[str, asyncio.Future[str]]:
        assert self._session is not None
        prompt_id = str(uuid.uuid4())
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[prompt_id] = fut  # before the POST: frames may beat its answer
        body = orjson.dumps({"prompt": workflow, "client_id": self.client_id, "prompt_id": prompt_id})
        async with self._session.post(self.base_url + "/prompt", data=body,
                                      headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            if resp.status != 200:
                self._waiters.pop(prompt_id, None)
                raise RuntimeError(f"POST /prompt: HTTP {resp.status}: {raw[:300]!r}")
        return prompt_id, fut

    async def finish(self, prompt_id: str, fut: asyncio.Future[str],
                     steps: dict[str, float] | None = None) -> list[Path]:
        """Wait for the end frame, read the history entry, download every output. `steps`, if
        given, receives the seconds spent in each: wait, history, view."""
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(fut, self.timeout)
        finally:
            self._waiters.pop(prompt_id, None)
        t1 = time.perf_counter()
        entry = await self.history(prompt_id)
        t2 = time.perf_counter()
        status = (entry.get("status") or {}).get("status_str")
        if status != "success":
            raise RuntimeError(f"prompt {prompt_id} ended with status {status!r}: {entry.get('status')}")
        paths = []
        for node_out in (entry.get("outputs") or {}).values():
            for items in node_out.values():
                if not isinstance(items, list):
                    continue
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("filename"), str):
                        paths.append(await self.download(prompt_id, item))
        if steps is not None:
            steps.update(wait=t1 - t0, history=t2 - t1, view=time.perf_counter() - t2)
        return paths

    async def run(self, workflow: dict[str, Any]) -> list[Path]:
        prompt_id, fut = await self.post(workflow)
        return await self.finish(prompt_id, fut)

    async def history(self, prompt_id: str) -> dict[str, Any]:
        assert self._session is not None
        delay, deadline = 0.005, time.monotonic() + 10
        while True:
            async with self._session.get(f"{self.base_url}/history/{prompt_id}") as resp:
                data = orjson.loads(await resp.read())
            entry = data.get(prompt_id) if isinstance(data, dict) else None
            if entry:
                return entry
            if time.monotonic() > deadline:
                raise RuntimeError(f"no /history entry for {prompt_id}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def download(self, prompt_id: str, item: dict[str, Any]) -> Path:
        assert self._session is not None
        params = {"filename": item["filename"], "subfolder": item.get("subfolder") or "",
                  "type": item.get("type") or "output"}
        dest = self.out_dir / prompt_id / item["filename"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        async with self._session.get(self.base_url + "/view", params=params) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET /view {params}: HTTP {resp.status}")
            with open(dest, "wb") as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
                    size += len(chunk)
        self.files_written += 1
        self.bytes_written += size
        return dest
