"""Files clients upload with POST /assets, kept on the gateway's disk under ASSETS_DIR by their
content hash for ASSET_TTL seconds, and named in workflows as `asset://<sha256>`."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from .errors import InputInvalid, InputUnavailable

REF_PREFIX = "asset://"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def asset_ref(sha256: str) -> str:
    return REF_PREFIX + sha256


def parse_ref(ref: str) -> str:
    sha = ref[len(REF_PREFIX):].strip("/").lower()
    if not _SHA256.fullmatch(sha):
        raise InputInvalid("not an asset reference: expected asset://<sha256> as POST /assets returned it")
    return sha


class AssetStore:
    def __init__(self, root: Path, ttl: float):
        self.root = root
        self.ttl = ttl

    def _path(self, sha256: str) -> Path:
        return self.root / sha256

    async def save(self, sha256: str, data: bytes) -> float:
        """Store the bytes (or refresh the stored copy); returns when they expire."""
        await asyncio.to_thread(self._save, sha256, data)
        return time.time() + self.ttl

    def _save(self, sha256: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(sha256)
        if path.is_file():
            os.utime(path)  # the same content again: keep it another ASSET_TTL
            return
        tmp = path.with_name(f".{sha256}.{os.getpid()}.part")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    async def load(self, sha256: str) -> bytes:
        try:
            return await asyncio.to_thread(self._load, sha256)
        except FileNotFoundError:
            raise InputUnavailable(
                "no such asset: unknown, or older than ASSET_TTL; upload it again with POST /assets") from None

    def _load(self, sha256: str) -> bytes:
        path = self._path(sha256)
        if time.time() - path.stat().st_mtime > self.ttl:
            path.unlink(missing_ok=True)
            raise FileNotFoundError(path)
        return path.read_bytes()

    def expire(self) -> int:
        """Delete assets older than ASSET_TTL (and parts of writes that died)."""
        if not self.root.is_dir():
            return 0
        cutoff, removed = time.time() - self.ttl, 0
        for path in self.root.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
