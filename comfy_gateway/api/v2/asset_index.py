"""What the v2 face knows of an uploaded asset beyond its bytes (which lie in ASSETS_DIR under
their sha256, where POST /assets of the gateway's own API puts them too): its blake3 hash (the
v2 contract names content by blake3), the name and type the client gave, when it came. Kept
as small files beside the bytes, so they expire with them (ASSET_TTL) and every process
sharing ASSETS_DIR sees them."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from blake3 import blake3

_HEX64 = re.compile(r"[0-9a-f]{64}")
THREAD_OVER = 1 << 20


@dataclass
class AssetMeta:
    sha256: str
    blake3: str
    size_bytes: int
    content_type: str
    file_path: str | None
    created_at: float
    expires_at: float


def blake3_of(data: bytes) -> str:
    return blake3(data).hexdigest()


async def blake3_async(data: bytes) -> str:
    return await asyncio.to_thread(blake3_of, data) if len(data) > THREAD_OVER else blake3_of(data)


def parse_hash(value: str) -> tuple[str, str] | None:
    """('blake3' | 'sha256', hex) from 'blake3:<hex>' or 'sha256:<hex>'; None if neither."""
    algo, _, hexa = value.strip().lower().partition(":")
    return (algo, hexa) if algo in ("blake3", "sha256") and _HEX64.fullmatch(hexa) else None


class AssetIndex:
    def __init__(self, root: Path, ttl: float):
        self.root, self.ttl = root, ttl

    def _meta_path(self, sha256: str) -> Path:
        return self.root / f"v2meta-{sha256}.json"

    def _by_blake3(self, b3: str) -> Path:
        return self.root / f"v2blake3-{b3}"

    def _write(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def remember(self, meta: AssetMeta) -> None:
        self._write(self._meta_path(meta.sha256), orjson.dumps({
            "blake3": meta.blake3, "content_type": meta.content_type, "file_path": meta.file_path,
            "created_at": meta.created_at}))
        self._write(self._by_blake3(meta.blake3), meta.sha256.encode())

    def blob_path(self, sha256: str) -> Path | None:
        """The bytes, if still kept (younger than ASSET_TTL)."""
        path = self.root / sha256
        try:
            fresh = time.time() - path.stat().st_mtime <= self.ttl
        except OSError:
            return None
        return path if fresh else None

    def get(self, sha256: str) -> AssetMeta | None:
        if not _HEX64.fullmatch(sha256):
            return None
        blob = self.blob_path(sha256)
        try:
            raw = orjson.loads(self._meta_path(sha256).read_bytes())
            stat = blob.stat() if blob else None
        except (OSError, orjson.JSONDecodeError):
            return None
        if stat is None:
            return None
        return AssetMeta(sha256, raw["blake3"], stat.st_size, raw.get("content_type") or "application/octet-stream",
                         raw.get("file_path"), float(raw.get("created_at") or stat.st_mtime), stat.st_mtime + self.ttl)

    def find(self, value: str) -> AssetMeta | None:
        """The asset with this content hash ('blake3:<hex>' or 'sha256:<hex>')."""
        parsed = parse_hash(value)
        if parsed is None:
            return None
        algo, hexa = parsed
        if algo == "sha256":
            return self.get(hexa)
        try:
            sha = self._by_blake3(hexa).read_text().strip()
        except OSError:
            return None
        return self.get(sha)

    def forget(self, sha256: str) -> bool:
        meta = self.get(sha256)
        if meta is None:
            return False
        for path in (self.root / sha256, self._meta_path(sha256), self._by_blake3(meta.blake3)):
            path.unlink(missing_ok=True)
        return True
