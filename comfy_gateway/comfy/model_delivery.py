"""Making a cached model file visible to the backend that will run a job, under the name that
ComfyUI's loaders list. Two ways, chosen per backend:

- SHARED_MODELS_DIR: a models folder the gateway and every backend mount alike. The file is
  placed at `<dir>/<folder>/<name>` atomically (a hard link or copy under a temporary name,
  then a rename), so a loader never lists half a file. Every backend holds it at once.
- ComfyUI's assets API, for a backend started with --enable-assets (its /features says
  "assets": true): `HEAD /api/assets/hash/blake3:<hex>` first, then `POST /api/assets/from-hash`
  when ComfyUI has the content already (nothing is sent twice), else a multipart
  `POST /api/assets` with tags `models` and `model_type:<folder>`. The name loaders see is the
  asset's `loader_path`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from ..inputs.errors import InputRefused, InputUnavailable
from ..inputs.model_cache import CachedModel
from ..inputs.singleflight import SingleFlight
from .backend import Backend

log = logging.getLogger(__name__)

NO_WAY = ("a model by URL needs a way to reach the backends: set SHARED_MODELS_DIR to a models "
          "folder the gateway and the backends share, or start ComfyUI with --enable-assets "
          "(ComfyUI 0.33 or newer)")
CHUNK = 1 << 20


class AssetsClient:
    """ComfyUI's /api/assets routes, as app/assets/api/routes.py serves them."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float):
        self.base = base_url.rstrip("/")
        self._session = session
        self._short = aiohttp.ClientTimeout(total=timeout)

    async def features(self) -> dict[str, Any]:
        async with self._session.get(self.base + "/features", timeout=self._short) as resp:
            if resp.status != 200:
                return {}
            data = await resp.json(content_type=None)
            return data if isinstance(data, dict) else {}

    async def has(self, blake3_hex: str) -> bool:
        async with self._session.head(f"{self.base}/api/assets/hash/blake3:{blake3_hex}",
                                      timeout=self._short) as resp:
            if resp.status in (200, 404):
                return resp.status == 200
            raise InputUnavailable(f"ComfyUI's assets API answered HTTP {resp.status} to a hash look-up")

    async def from_hash(self, blake3_hex: str, name: str, tags: list[str]) -> dict[str, Any]:
        body = {"hash": f"blake3:{blake3_hex}", "name": name, "tags": tags}
        async with self._session.post(self.base + "/api/assets/from-hash", json=body, timeout=self._short) as resp:
            return await self._asset(resp)

    async def upload(self, path: Path, model: CachedModel, tags: list[str]) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("hash", f"blake3:{model.blake3}")
        form.add_field("tags", json.dumps(tags))
        form.add_field("name", model.filename)
        form.add_field("file", _file_chunks(path), filename=model.filename, content_type="application/octet-stream")
        # No total timeout: a large file takes long; a stalled connection still fails.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._short.total, sock_read=self._short.total)
        async with self._session.post(self.base + "/api/assets", data=form, timeout=timeout) as resp:
            return await self._asset(resp)

    @staticmethod
    async def _asset(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        body = await resp.read()
        if resp.status not in (200, 201):
            raise InputUnavailable(f"ComfyUI's assets API refused the model: HTTP {resp.status}: {body[:300]!r}")
        return json.loads(body)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


def loader_name(asset: dict[str, Any], model: CachedModel) -> str:
    """The name a loader lists the asset under: `loader_path` (newer ComfyUIs), else the
    `filename` ComfyUI writes into user_metadata, else the file ComfyUI stores it as."""
    name = asset.get("loader_path") or (asset.get("user_metadata") or {}).get("filename")
    return str(name) if name else f"{model.blake3}{Path(model.filename).suffix}"


class ModelDelivery:
    def __init__(self, backends: list[Backend], shared_dir: Path | None, timeout: float):
        self._backends = {b.name: b for b in backends}
        self.shared_dir = shared_dir
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, AssetsClient] = {}
        self._features: dict[str, dict[str, Any]] = {}
        self._held: dict[str, dict[str, str]] = {b.name: {} for b in backends}  # backend -> sha -> name
        self._flights: SingleFlight[str] = SingleFlight()
        self.transfers = 0  # files actually written or sent (not found already there)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._clients = {name: AssetsClient(b.url, self._session, self._timeout) for name, b in self._backends.items()}

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _assets_enabled(self, backend_name: str) -> bool:
        if backend_name not in self._features:
            try:
                self._features[backend_name] = await self._clients[backend_name].features()
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                return False  # unreachable now: asked again next time
        return self._features[backend_name].get("assets") is True

    async def check_a_way(self) -> None:
        """Raise InputRefused, saying how to enable one, when no backend can receive models."""
        if self.shared_dir is not None:
            return
        for name in self._backends:
            if await self._assets_enabled(name):
                return
        raise InputRefused(NO_WAY)

    def holds(self, backend_name: str, shas: set[str]) -> bool:
        held = self._held.get(backend_name, {})
        return all(sha in held for sha in shas)

    def models(self, backend_name: str) -> list[str]:
        return sorted(set(self._held.get(backend_name, {}).values()))

    async def place(self, backend: Backend, model: CachedModel, folder: str, path: Path) -> tuple[str, bool]:
        """(the name the backend's loaders list the model under, whether it was sent just now)."""
        name = self._held[backend.name].get(model.sha256)
        if name is not None:
            return name, False
        before = self.transfers
        name = await self._flights.run((backend.name, model.sha256, folder),
                                       lambda: self._place(backend, model, folder, path))
        return name, self.transfers > before

    async def _place(self, backend: Backend, model: CachedModel, folder: str, path: Path) -> str:
        if self.shared_dir is not None:
            name = await asyncio.to_thread(self._into_shared, model, folder, path)
            for held in self._held.values():  # one folder that every backend reads
                held[model.sha256] = name
            return name
        if not await self._assets_enabled(backend.name):
            raise InputRefused(f"{backend.name} cannot receive models: {NO_WAY}")
        client = self._clients[backend.name]
        features = self._features.get(backend.name, {})
        tags = ["models", f"model_type:{folder}"] if features.get("supports_model_type_tags") else ["models", folder]
        try:
            if await client.has(model.blake3):
                asset = await client.from_hash(model.blake3, model.filename, tags)
            else:
                asset = await client.upload(path, model, tags)
                self.transfers += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise InputUnavailable(f"could not send the model to {backend.name}: {type(exc).__name__}: {exc}") from None
        name = loader_name(asset, model)
        self._held[backend.name][model.sha256] = name
        return name

    def _into_shared(self, model: CachedModel, folder: str, src: Path) -> str:
        assert self.shared_dir is not None
        target = self.shared_dir / folder / model.filename
        if target.is_file() and target.stat().st_size == model.size:
            return model.filename  # placed before (by this or another gateway): same name, same content
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{model.filename}.{os.getpid()}.part")
        try:
            try:
                os.link(src, tmp)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self.transfers += 1
        log.info("model %s placed in %s", model.filename, target.parent)
        return model.filename

    def forget(self, backend_name: str, sha256: str) -> None:
        self._held.get(backend_name, {}).pop(sha256, None)
