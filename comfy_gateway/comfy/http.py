"""ComfyUI's HTTP API, one method per route, exactly as the recorded transcripts show."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
import orjson

from .errors import BackendError, PromptNotAccepted, PromptOutcomeUnknown, PromptRejected


# Answers of a proxy in front of ComfyUI that leave open whether ComfyUI got the prompt
# (ComfyUI itself never sends them).
PROXY_UNKNOWN = (502, 504)


class ComfyHTTP:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float):
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            async with self._session.request(
                method, self.base_url + path, timeout=self._timeout, **kw
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise BackendError(f"{method} {path}: HTTP {resp.status}: {body[:300]!r}")
                return orjson.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def post_prompt(
        self, prompt: dict[str, Any], *, client_id: str, prompt_id: str,
        extra_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = extra_data
        try:
            async with self._session.post(
                self.base_url + "/prompt", data=orjson.dumps(body),
                headers={"Content-Type": "application/json"}, timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                if resp.status == 400:
                    # Validation failure: {error: {type, message, details, extra_info}, node_errors}
                    try:
                        parsed = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        parsed = {"error": {"type": "invalid_prompt", "message": raw.decode(errors="replace")}}
                    raise PromptRejected(parsed if isinstance(parsed, dict) else {"error": parsed})
                if resp.status in PROXY_UNKNOWN:
                    # A proxy's answer: it may have forwarded the prompt before its upstream
                    # failed or timed out, so ComfyUI may have queued it.
                    raise PromptOutcomeUnknown(f"POST /prompt: HTTP {resp.status} from a proxy: {raw[:300]!r}")
                if resp.status != 200:
                    raise PromptNotAccepted(f"POST /prompt: HTTP {resp.status}: {raw[:300]!r}")
                return orjson.loads(raw)
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            raise PromptNotAccepted(f"POST /prompt: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Sent, but no answer: ComfyUI may or may not have queued it.
            raise PromptOutcomeUnknown(f"POST /prompt: {type(exc).__name__}: {exc}") from exc

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry, or None while ComfyUI has none (it answers 200 {} then)."""
        data = await self._json("GET", f"/history/{prompt_id}")
        return (data or {}).get(prompt_id)

    async def queue(self) -> dict[str, Any]:
        return await self._json("GET", "/queue")

    async def system_stats(self, timeout: float | None = None) -> dict[str, Any]:
        kw = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        try:
            async with self._session.get(self.base_url + "/system_stats", **kw) as resp:
                if resp.status != 200:
                    raise BackendError(f"GET /system_stats: HTTP {resp.status}")
                return orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendError(f"GET /system_stats: {type(exc).__name__}: {exc}") from exc

    async def interrupt(self, prompt_id: str) -> None:
        # Always scoped to one prompt: ComfyUI then interrupts only if that prompt is the one
        # running. A bare /interrupt would stop whatever runs, possibly another client's job.
        await self._json("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        await self._json("POST", "/queue", json={"delete": prompt_ids})

    async def free(self) -> None:
        """Ask ComfyUI to unload its models and free the memory it caches (after an OOM);
        it does so before the next prompt it runs."""
        await self._json("POST", "/free", json={"unload_models": True, "free_memory": True})

    async def delete_history(self, prompt_ids: list[str]) -> None:
        await self._json("POST", "/history", json={"delete": prompt_ids})

    async def upload_image(
        self, name: str, data: bytes, *, content_type: str = "image/png", subfolder: str = "",
        overwrite: bool = True,
    ) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type=content_type)
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true" if overwrite else "false")
        return await self._json("POST", "/upload/image", data=form)

    @asynccontextmanager
    async def view(self, filename: str, subfolder: str, type_: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """An open /view response to read in chunks; the body is never loaded whole."""
        params = {"filename": filename, "subfolder": subfolder, "type": type_}
        try:
            # No total timeout: a large video may take long; a stalled read still fails.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total,
                                            sock_read=self._timeout.total)
            async with self._session.get(self.base_url + "/view", params=params, timeout=timeout) as resp:
                if resp.status != 200:
                    raise BackendError(f"GET /view {filename!r}: HTTP {resp.status}")
                yield resp
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendError(f"GET /view {filename!r}: {type(exc).__name__}: {exc}") from exc

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """Every node class (or one) with its inputs, outputs and choices: what /prompt checks."""
        path = "/object_info" if node_class is None else f"/object_info/{quote(node_class, safe='')}"
        return await self._json("GET", path) or {}
