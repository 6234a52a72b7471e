"""Model files on the gateway's disk (MODEL_CACHE_DIR), named by their SHA-256, least recently
used out past MODEL_CACHE_BYTES. A URL is downloaded once, through the address guard, streamed
to a temporary file (memory does not grow with its size), checked against MAX_MODEL_BYTES and
sniffed from its first bytes; requests for a URL already downloading wait for that download.

Beside each file, `<sha256>.json` keeps what was learnt about it (format, BLAKE3, the name it
gets on backends, the URLs that gave it), so a restarted gateway still knows its cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp
from blake3 import blake3

from ..net.guard import NetworkPolicy
from .assets import parse_ref
from .describe import describe
from .errors import InputTooLarge, InputUnavailable
from .fetch import FetchLimits, open_url
from .models import SNIFF_BYTES, model_filename, sniff_model
from .singleflight import SingleFlight

log = logging.getLogger(__name__)

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total if declared)


@dataclass
class CachedModel:
    sha256: str
    blake3: str
    size: int
    format: str
    filename: str  # the name it gets on a backend (inside its models folder)
    urls: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class ModelCache:
    def __init__(self, root: Path, max_bytes: int, policy: NetworkPolicy, limits: FetchLimits,
                 assets_dir: Path):
        self.root = root
        self.max_bytes = max_bytes
        self.policy = policy
        self.limits = limits
        self.assets_dir = assets_dir
        self._by_sha: dict[str, CachedModel] = {}
        self._by_url: dict[str, str] = {}
        self._flights: SingleFlight[CachedModel] = SingleFlight()
        self._watchers: dict[str, list[Progress]] = {}
        self.in_flight: dict[str, dict[str, int | None]] = {}  # shown in /queue-info
        self.downloads = 0
        self.evictions = 0
        self._session: aiohttp.ClientSession | None = None

    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        if not self.root.is_dir():
            return  # created with the first model
        for meta in self.root.glob("*.json"):
            try:
                model = CachedModel(**json.loads(meta.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if self.path(model.sha256).is_file():
                self._by_sha[model.sha256] = model
                self._by_url.update({u: model.sha256 for u in model.urls})
        for part in self.root.glob(".*.part"):
            part.unlink(missing_ok=True)  # a download that died with the process

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    # -- obtaining ----------------------------------------------------------------------------
    async def obtain(self, source: str, on_progress: Progress | None = None) -> CachedModel:
        """The model a URL or asset:// reference names, from the cache or downloaded now."""
        if source.startswith("asset://"):
            return await self._flights.run(("asset", source), lambda: self._from_asset(source))
        sha = self._by_url.get(source)
        if sha is not None and self.path(sha).is_file():
            self._touch(sha)
            return self._by_sha[sha]
        if on_progress is not None:
            self._watchers.setdefault(source, []).append(on_progress)
        try:
            return await self._flights.run(("url", source), lambda: self._download(source))
        finally:
            if on_progress is not None:
                watchers = self._watchers.get(source, [])
                if on_progress in watchers:
                    watchers.remove(on_progress)
                if not watchers:
                    self._watchers.pop(source, None)

    def get(self, sha256: str) -> CachedModel | None:
        model = self._by_sha.get(sha256)
        if model is None or not self.path(sha256).is_file():
            return None
        self._touch(sha256)
        return model

    async def _download(self, url: str) -> CachedModel:
        assert self._session is not None, "ModelCache.start() was not called"
        started = time.perf_counter()
        tmp = self.root / f".{os.urandom(8).hex()}.part"
        state: dict[str, int | None] = {"bytes": 0, "total": None}
        self.in_flight[describe(url)] = state
        try:
            async with open_url(self._session, url, self.policy, self.limits) as resp:
                state["total"] = resp.content_length
                model = await self._write(resp.content.iter_chunked(CHUNK), tmp, url, state)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            self.in_flight.pop(describe(url), None)
        self.downloads += 1
        log.info("model %s: %d bytes (%s) in %.3f s", describe(url), model.size, model.format,
                 time.perf_counter() - started)
        return model

    async def _from_asset(self, ref: str) -> CachedModel:
        sha = parse_ref(ref)
        known = self.get(sha)
        if known is not None:
            return known
        src = self.assets_dir / sha
        if not src.is_file():
            raise InputUnavailable("no such asset: unknown, or older than ASSET_TTL; upload it again with POST /assets")

        async def chunks():
            with open(src, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, CHUNK):
                    yield chunk

        tmp = self.root / f".{os.urandom(8).hex()}.part"
        try:
            return await self._write(chunks(), tmp, ref, {"bytes": 0, "total": src.stat().st_size})
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def _write(self, chunks, tmp: Path, source: str, state: dict[str, int | None]) -> CachedModel:
        """Stream the chunks to `tmp` while hashing, sniffing the head and counting the size;
        then move the file into the cache under its hash."""
        sha, b3 = hashlib.sha256(), blake3()
        head, fmt, size, last = b"", None, 0, 0.0
        self.root.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.limits.max_bytes:
                    raise InputTooLarge(f"more than {self.limits.max_bytes} bytes (MAX_MODEL_BYTES)")
                if fmt is None:
                    head += chunk[:SNIFF_BYTES]
                    if len(head) >= SNIFF_BYTES:
                        fmt = sniff_model(head)
                sha.update(chunk)
                b3.update(chunk)
                out.write(chunk)
                state["bytes"] = size
                now = time.monotonic()
                if now - last >= 0.5:
                    last = now
                    self._report(source, size, state["total"])
        if fmt is None:
            fmt = sniff_model(head)  # a file shorter than the sniffed head
        digest = sha.hexdigest()
        self._report(source, size, state["total"])
        model = self._by_sha.get(digest) or CachedModel(digest, b3.hexdigest(), size, fmt,
                                                        model_filename(source, fmt, digest))
        if source.startswith(("http://", "https://")) and source not in model.urls:
            model.urls.append(source)
        os.replace(tmp, self.path(digest))
        self.path(digest).with_suffix(".json").write_text(model.to_json())
        self._by_sha[digest] = model
        self._by_url.update({u: digest for u in model.urls})
        self._evict(keep=digest)
        return model

    def _report(self, source: str, done: int, total: int | None) -> None:
        for watcher in list(self._watchers.get(source, [])):
            try:
                watcher(done, total)
            except Exception:  # noqa: BLE001 - a watcher's fault never breaks the download
                log.exception("model progress watcher failed")

    # -- least recently used out --------------------------------------------------------------
    def _touch(self, sha256: str) -> None:
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            pass

    def _evict(self, keep: str) -> None:
        entries = []
        for sha, model in self._by_sha.items():
            try:
                entries.append((self.path(sha).stat().st_mtime, sha, model.size))
            except FileNotFoundError:
                continue
        total = sum(size for _, _, size in entries)
        for _, sha, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if sha == keep:
                continue  # just asked for: used once even when larger than the whole cache
            self.path(sha).unlink(missing_ok=True)
            self.path(sha).with_suffix(".json").unlink(missing_ok=True)
            model = self._by_sha.pop(sha)
            for url in model.urls:
                self._by_url.pop(url, None)
            total -= size
            self.evictions += 1

    def stats(self) -> dict[str, object]:
        size = sum(m.size for m in self._by_sha.values())
        return {"bytes": size, "max_bytes": self.max_bytes, "files": len(self._by_sha),
                "downloads": self.downloads, "evictions": self.evictions,
                "downloading": {k: dict(v) for k, v in self.in_flight.items()}}
