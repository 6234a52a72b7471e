"""Input bytes kept by content hash, least recently used first out, within INPUT_CACHE_BYTES;
and which URL gave which content, so a URL seen before is not fetched again."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    data: bytes
    mime: str
    ext: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def filename(self) -> str:
        """The name the file gets on a backend: its content, so equal bytes share one file."""
        return f"{self.sha256}{self.ext}"


class ContentCache:
    def __init__(self, max_bytes: int, max_urls: int = 65536):
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._urls: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._max_urls = max_urls
        self.size = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, sha256: str) -> Blob | None:
        blob = self._blobs.get(sha256)
        if blob is None:
            self.misses += 1
            return None
        self._blobs.move_to_end(sha256)
        self.hits += 1
        return blob

    def put(self, blob: Blob) -> None:
        if blob.size > self.max_bytes:
            return  # larger than the whole cache: used once, never kept
        if blob.sha256 in self._blobs:
            self._blobs.move_to_end(blob.sha256)
            return
        self._blobs[blob.sha256] = blob
        self.size += blob.size
        while self.size > self.max_bytes:
            _, old = self._blobs.popitem(last=False)
            self.size -= old.size
            self.evictions += 1

    def by_url(self, url: str) -> tuple[Blob, str | None] | None:
        """The content a URL gave before (and the type its server declared), while cached."""
        known = self._urls.get(url)
        if known is None:
            return None
        blob = self.get(known[0])
        if blob is None:
            del self._urls[url]
            return None
        self._urls.move_to_end(url)
        return blob, known[1]

    def remember_url(self, url: str, sha256: str, declared: str | None) -> None:
        self._urls[url] = (sha256, declared)
        self._urls.move_to_end(url)
        while len(self._urls) > self._max_urls:
            self._urls.popitem(last=False)

    def stats(self) -> dict[str, int]:
        return {"bytes": self.size, "max_bytes": self.max_bytes, "files": len(self._blobs),
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions}
